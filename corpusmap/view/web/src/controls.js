// The control panel: search, colour mode (with the word overlay and its quick picks), legend, year filter,
// and the button for the map's parameters and evaluation.

import { el } from './dom.js';
import { distinctTokens } from './tokens.js';

export function buildControls(manifest, handlers) {
  const c = {};
  c.search = el('input', {
    type: 'search', id: 'cm-search', placeholder: manifest.index ? 'Search titles and abstracts' : 'no search index',
    disabled: !manifest.index, autocomplete: 'off', spellcheck: 'false', 'aria-label': 'Search words',
  });
  c.searchCount = el('div', { class: 'cm-count', id: 'cm-search-count', 'aria-live': 'polite' },
    manifest.index ? 'Whole words, all must occur; "quotes" for a phrase.' : manifest.index_note || '');
  let timer = null;
  c.search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => handlers.search(c.search.value), 300);
  });
  c.search.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      clearTimeout(timer);
      handlers.search(c.search.value);
    } else if (e.key === 'Escape') {
      e.preventDefault();  // Escape closes the paper (the page's handler), not the search too (the browser's default)
    }
  });

  c.color = el('select', { id: 'cm-color', 'aria-label': 'Colour by', onchange: () => handlers.color(c.color.value) });
  for (const [value, text] of colorOptions(manifest)) c.color.appendChild(el('option', { value }, text));

  c.words = el('input', {
    type: 'text', id: 'cm-words', placeholder: 'words, e.g. delve, intricate', autocomplete: 'off', spellcheck: 'false',
    'aria-label': 'Words to colour by',
  });
  c.words.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') handlers.words();
  });
  c.words.addEventListener('change', () => handlers.words());
  c.words.addEventListener('input', () => syncPicks(c));
  c.picks = el('div', { class: 'cm-picks', id: 'cm-picks' });
  const targets = Object.keys(manifest.excess || {}).sort().reverse();  // the latest target first (and chosen)
  c.target = el('select', { id: 'cm-excess-target', 'aria-label': 'Excess words of', hidden: targets.length < 2 });
  for (const t of targets) c.target.appendChild(el('option', { value: t }, `excess words of ${t}`));
  const renderPicks = () => {
    c.picks.replaceChildren();
    const target = c.target.value || targets[0];
    for (const word of (manifest.excess || {})[target] || []) {
      c.picks.appendChild(el('button', { type: 'button', class: 'cm-chip', 'aria-pressed': 'false', dataset: { word },
        onclick: () => toggleWord(c, word, handlers) }, word));
    }
    syncPicks(c);
  };
  c.target.addEventListener('change', renderPicks);
  renderPicks();
  c.wordsBox = el('div', { class: 'cm-words', hidden: true }, c.words, c.target, c.picks);
  c.legend = el('div', { class: 'cm-legend', id: 'cm-legend' });

  if (manifest.years) {
    const { min, max } = manifest.years;
    const attrs = { type: 'number', min: Math.floor(min), max: Math.ceil(max), step: 1 };
    c.yearFrom = el('input', { ...attrs, id: 'cm-year-from', value: Math.floor(min), 'aria-label': 'From year' });
    c.yearTo = el('input', { ...attrs, id: 'cm-year-to', value: Math.ceil(max), 'aria-label': 'To year' });
    // the bound being edited wins: moved past the other one, it takes the other one along (From 2015–2016, then
    // To 2013 gives 2013–2013, and From 2012 then 2012–2013, as meant)
    const apply = (edited) => {
      const from = c.yearFrom.value === '' ? Math.floor(min) : Number(c.yearFrom.value);
      const to = c.yearTo.value === '' ? Math.ceil(max) : Number(c.yearTo.value);
      if (from <= to) handlers.years(from, to);
      else if (edited === 'from') handlers.years(from, from);
      else handlers.years(to, to);
    };
    c.yearFrom.addEventListener('change', () => apply('from'));
    c.yearTo.addEventListener('change', () => apply('to'));
    c.yearCount = el('span', { class: 'cm-count', id: 'cm-year-count' });
    c.yearBox = el('div', { class: 'cm-row cm-years' }, el('label', {}, 'Years'), c.yearFrom, '–', c.yearTo,
      el('button', { type: 'button', class: 'cm-small', onclick: () => {
        c.yearFrom.value = Math.floor(min);
        c.yearTo.value = Math.ceil(max);
        apply('from');
      } }, 'all'), c.yearCount);
  }

  const about = el('button', { type: 'button', class: 'cm-small', id: 'cm-about', onclick: handlers.about }, 'About this map');
  const reset = el('button', { type: 'button', class: 'cm-small', id: 'cm-reset', onclick: handlers.reset }, 'Reset view');
  const labelsToggle = el('input', { type: 'checkbox', id: 'cm-show-labels', checked: true,
    onchange: (e) => handlers.labels(e.target.checked) });

  // the panel folds to its title (a narrow window starts folded: the map stays visible)
  c.fold = el('button', { type: 'button', class: 'cm-fold', id: 'cm-fold', 'aria-controls': 'cm-controls',
    onclick: () => {
      setFolded(c, !c.panel.classList.contains('cm-folded'));
      handlers.fold();
    } });
  c.panel = el('aside', { class: 'cm-panel cm-controls', id: 'cm-controls' },
    el('div', { class: 'cm-head' }, el('h1', { class: 'cm-title' }, manifest.title), c.fold),
    el('div', { class: 'cm-subtitle' }, manifest.subtitle),
    el('div', { class: 'cm-section' }, c.search, c.searchCount),
    el('div', { class: 'cm-section' }, el('div', { class: 'cm-row' }, el('label', { for: 'cm-color' }, 'Colour'), c.color),
      c.wordsBox, c.legend),
    c.yearBox && el('div', { class: 'cm-section' }, c.yearBox),
    el('div', { class: 'cm-section cm-row' },
      manifest.clusters.length ? el('label', { class: 'cm-check' }, labelsToggle, ' cluster names') : null, reset, about));
  setFolded(c, false);
  return c;
}

/** Fold the controls panel to its title row, or open it again. */
export function setFolded(c, folded) {
  c.panel.classList.toggle('cm-folded', folded);
  c.fold.setAttribute('aria-expanded', String(!folded));
  c.fold.title = folded ? 'Show the controls' : 'Fold the controls away';
  c.fold.textContent = folded ? '▸' : '▾';
}

/** The words box as the overlay reads it (its tokens), with word taken out if there, else added. */
function toggleWord(c, word, handlers) {
  const words = distinctTokens(c.words.value);
  const i = words.indexOf(word.toLowerCase());
  if (i >= 0) words.splice(i, 1);
  else words.push(word);
  c.words.value = words.join(', ');
  syncPicks(c);
  handlers.words();
}

/** Each quick-pick word shows whether it is in the words box now. */
export function syncPicks(c) {
  const words = new Set(distinctTokens(c.words.value));
  for (const chip of c.picks.children) chip.setAttribute('aria-pressed', String(words.has(chip.dataset.word)));
}

function colorOptions(manifest) {
  const out = [];
  if (manifest.labels) out.push(['label', manifest.labels.title || 'label']);
  if (manifest.years) out.push(['year', 'year']);
  manifest.clusters.forEach((level, i) => out.push([`cluster:${i}`, `clusters: ${level.name}`]));
  out.push(['none', 'one colour']);
  if (manifest.index) out.push(['words', 'words (presence)']);
  return out;
}
