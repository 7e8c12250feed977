// The panel of a clicked point: title, year, label, clusters, id (as a link where the scheme is known), the
// abstract, and its k nearest neighbours in the high-D space (listed in the stored order, clickable).

import { clear, el } from './dom.js';
import { idLink } from './links.js';

export class DetailsPanel {
  constructor(node, { onPick, onClose }) {
    this.node = node;
    this.onPick = onPick;
    this.onClose = onClose;
  }

  hide() {
    this.node.hidden = true;
    clear(this.node);
  }

  /** Show a point; info = {row, title, meta: [..strings], clusters: [[level, name]], record, pmids (bare
   * numeric ids are PMIDs), nbrTitle(row)}. */
  show(info) {
    const node = clear(this.node);
    node.hidden = false;
    node.appendChild(
      el('button', { class: 'cm-close', type: 'button', title: 'Close (Esc)', 'aria-label': 'Close', onclick: () => this.onClose() }, '×'),
    );
    node.appendChild(el('h2', { class: 'cm-details-title' }, info.title || '(no title)'));
    if (info.meta.length) node.appendChild(el('div', { class: 'cm-details-meta' }, info.meta.join(' · ')));
    const rec = info.record;
    const link = rec.id === null || rec.id === undefined ? null : idLink(rec.id, info.pmids);
    node.appendChild(
      el('div', { class: 'cm-details-id' },
        link ? [`${link.kind} `, el('a', { href: link.href, target: '_blank', rel: 'noopener noreferrer' }, String(rec.id))]
          : rec.id === null || rec.id === undefined ? `row ${info.row}` : `id ${rec.id}`),
    );
    for (const [level, name] of info.clusters) {
      node.appendChild(el('div', { class: 'cm-details-cluster' }, el('span', { class: 'cm-muted' }, `${level}: `), name));
    }
    if (rec.abstract) node.appendChild(el('p', { class: 'cm-abstract' }, rec.abstract));
    if (rec.neighbours.length) {
      node.appendChild(el('h3', {}, `${rec.neighbours.length} nearest neighbours (high-D)`));
      const list = el('ol', { class: 'cm-neighbours', id: 'cm-neighbours' });
      for (const nb of rec.neighbours) list.appendChild(this.neighbour(nb, info.nbrTitle));
      node.appendChild(list);
    }
  }

  neighbour(nb, nbrTitle) {
    if (nb.row < 0) {
      return el('li', { dataset: { row: '-1' }, class: 'cm-outside', title: 'not among the drawn sample' },
        nb.title || String(nb.id ?? ''), el('span', { class: 'cm-muted' }, ' (not drawn)'));
    }
    const pick = () => this.onPick(nb.row);
    const label = el('span', { class: 'cm-link', role: 'button', tabindex: '0', onclick: pick,
      onkeydown: (e) => e.key === 'Enter' && pick() }, '…');
    nbrTitle(nb.row).then((t) => {
      label.textContent = t || '(no title)';
    });
    return el('li', { dataset: { row: String(nb.row) } }, label);
  }
}
