// The panel of a clicked point: title, year, label, clusters, id (as a link where the scheme is known), the
// abstract, and its k nearest neighbours in the high-D space (listed in the stored order, clickable).

import { clear, el, hasTitle, shownTitle } from './dom.js';
import { idLink } from './links.js';
import { markWords } from './tokens.js';

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
   * numeric ids are PMIDs), hidden(nb) (a neighbour the year filter hides), nbrTitle(row), hubs (page row ->
   * the share of all papers whose neighbours it is among, for hubs), marks (a Set of tokens marked in the title
   * and abstract: the searched words and the overlay's)}. */
  show(info) {
    const keyboard = this.node.contains(document.activeElement);  // a neighbour picked from the keyboard
    const node = clear(this.node);
    node.hidden = false;
    node.appendChild(
      el('button', { class: 'cm-close', type: 'button', title: 'Close (Esc)', 'aria-label': 'Close', onclick: () => this.onClose() }, '×'),
    );
    const marked = (text) => markWords(text, info.marks, (word) => el('mark', {}, word));  // searched words
    const heading = el('h2', { class: 'cm-details-title', tabindex: '-1' },
      hasTitle(info.title) ? marked(info.title) : shownTitle(info.title));
    node.appendChild(heading);
    if (info.meta.length) node.appendChild(el('div', { class: 'cm-details-meta' }, info.meta.join(' · ')));
    const rec = info.record;
    const link = rec.id === null || rec.id === undefined ? null : idLink(rec.id, info.pmids);
    const anchor = (l, text) => [`${l.kind} `, el('a', { href: l.href, target: '_blank', rel: 'noopener noreferrer' }, text)];
    node.appendChild(
      el('div', { class: 'cm-details-id' },
        link ? anchor(link, String(rec.id)) : rec.id === null || rec.id === undefined ? `row ${info.row}` : `id ${rec.id}`),
    );
    const doi = rec.doi ? idLink(rec.doi) : null;  // a DOI column beside the ids (PubMed XML has both)
    if (rec.doi && !(link && link.kind === 'DOI')) {
      node.appendChild(el('div', { class: 'cm-details-id cm-details-doi' },
        doi && doi.kind === 'DOI' ? anchor(doi, rec.doi) : `DOI ${rec.doi}`));
    }
    for (const [level, name] of info.clusters) {
      node.appendChild(el('div', { class: 'cm-details-cluster' }, el('span', { class: 'cm-muted' }, `${level}: `), name));
    }
    if (rec.abstract) node.appendChild(el('p', { class: 'cm-abstract' }, marked(rec.abstract)));
    if (rec.neighbours.length) {
      node.appendChild(el('h3', {}, `${rec.neighbours.length} nearest neighbours (high-D)`));
      const list = el('ol', { class: 'cm-neighbours', id: 'cm-neighbours' });
      for (const nb of rec.neighbours) list.appendChild(this.neighbour(nb, info.nbrTitle, info.hidden, info.hubs));
      node.appendChild(list);
    }
    if (keyboard) heading.focus();  // the focus stays in the panel, on the new paper's title
  }

  neighbour(nb, nbrTitle, hidden = () => false, hubs = {}) {
    if (nb.row < 0) {
      const why = hidden(nb) ? ' (not drawn; outside the year range)' : ' (not drawn)';
      return el('li', { dataset: { row: '-1' }, class: 'cm-outside', title: 'not among the drawn sample' },
        shownTitle(nb.title), hasTitle(nb.title) || nb.id === null || nb.id === undefined ? null : ` · id ${nb.id}`,
        el('span', { class: 'cm-muted' }, why));
    }
    // a real button: Enter and Space pick it, and it is in the tab order (not for a paper the year filter hides)
    const label = el('button', { class: 'cm-link', type: 'button', disabled: hidden(nb),
      onclick: () => this.onPick(nb.row) }, '…');
    nbrTitle(nb.row).then((t) => {
      label.textContent = shownTitle(t);
    });
    const out = label.disabled ? el('span', { class: 'cm-muted' }, ' (outside the year range)') : null;
    const share = hubs[String(nb.row)];  // near everything: a neighbour that says little about this paper
    const hub = share === undefined ? null : el('span', { class: 'cm-muted cm-hub',
      title: 'a hub: among the nearest neighbours of a large share of all papers' },
    ` (hub: a neighbour of ${Math.round(100 * share)}% of all papers)`);
    return el('li', { dataset: { row: String(nb.row) } }, label, out, hub);
  }
}
