// The map page: one regl-scatterplot canvas for every drawn point (typed arrays from the writer), panels built
// with DOM text nodes, texts and the search index loaded lazily from data scripts.

import KDBush from 'kdbush';
import createScatterplot from 'regl-scatterplot';

import { ClusterLabels } from './labels.js';
import { categoryMode, countLegend, plainMode, regionMode, wordsMode, yearMode } from './colors.js';
import { buildControls, setFolded, syncPicks } from './controls.js';
import { typed } from './decode.js';
import { DensityLayer } from './density.js';
import { DetailsPanel } from './details.js';
import { clear, el, fmt, plural, shownTitle } from './dom.js';
import { hashWriter, parseHash } from './hashstate.js';
import { renderLegend } from './legend.js';
import { idLink } from './links.js';
import { SearchIndex } from './search.js';
import { load, setFolder } from './store.js';
import { Texts } from './texts.js';
import { distinctTokens, parseQuery } from './tokens.js';

const DIM = 0.08;
const NARROW = { width: 720, height: 520 };  // in a window smaller than this the controls start folded
const ZOOM_OUT_LIMIT = 4;
const PHRASE_CHUNKS = 200;  // text chunks (1,000 abstracts each) a phrase search reads at most
const ZOOM_IN_LIMIT = 10000;  // times the whole-map view (float32 coordinates in [-1, 1]: still pixels apart)
const isNarrow = () => window.innerWidth < NARROW.width || window.innerHeight < NARROW.height;

export async function boot() {
  const t0 = performance.now();
  const root = document.getElementById('corpusmap');
  const manifest = JSON.parse(document.getElementById('corpusmap-manifest').textContent);
  setFolder(manifest.folder ? manifest.folder.split('/').map(encodeURIComponent).join('/') : null);
  const app = new App(root, manifest);
  window.corpusmap = app.api();
  app.timing.boot = t0;
  try {
    await app.start();
  } catch (error) {
    app.fail(error);
  }
}

class App {
  constructor(root, manifest) {
    this.root = root;
    this.m = manifest;
    this.n = manifest.n;
    this.timing = {};
    this.ready = false;
    this.error = null;
    this.selected = null;
    this.hovered = null;
    this.clicks = 0;  // points selected by a click (a click that selects none is on the background)
    this.hits = null;
    this.filter = null;
    this.keep = null;  // with a year filter: 1 for the points in the range
    this.picked = null;
    this.mode = null;
    this.drawing = Promise.resolve();
    this.texts = new Texts(manifest);
    this.index = manifest.index ? new SearchIndex(manifest.index, this.n) : null;
    const writeHash = hashWriter(() => this.viewState());
    this.saveState = () => this.ready && writeHash();  // not while the page opens (and restores the URL's state)
    this.buildDom();
  }

  buildDom() {
    this.canvas = el('canvas', {
      class: 'cm-canvas', id: 'cm-canvas', tabindex: '0', role: 'application',
      'aria-label': 'Map: arrow keys pan, + and − zoom, 0 shows the whole map',
    });
    this.densityCanvas = el('canvas', { class: 'cm-density' });
    this.tooltip = el('div', { class: 'cm-tooltip', id: 'cm-tooltip', hidden: true });
    this.status = el('div', { class: 'cm-status', id: 'cm-status' }, 'Loading the map…');
    this.mapNode = el('div', { class: 'cm-map', id: 'cm-map' }, this.densityCanvas, this.canvas);
    this.controls = buildControls(this.m, {
      search: (q) => this.search(q),
      color: (mode) => this.setColor(mode),
      words: () => this.setWords(),
      years: (from, to) => this.setYears(from, to),
      about: () => this.toggleInfo(true),
      reset: () => this.resetView(),
      labels: (on) => {
        this.labels.enabled = on;
        this.onView();
      },
      fold: () => {  // the panel's new size: refit the whole-map view, move names
        this.autoFolded = false;
        if (this.scatter) this.refit();
      },
    });
    this.narrow = isNarrow();
    this.autoFolded = this.narrow;  // folded by the page, not by the reader: unfolded again when the window grows
    if (this.narrow) setFolded(this.controls, true);
    this.detailsNode = el('aside', { class: 'cm-panel cm-details', id: 'cm-details', hidden: true });
    this.details = new DetailsPanel(this.detailsNode, { onPick: (row) => this.pick(row), onClose: () => this.unpick() });
    this.infoNode = this.buildInfo();
    clear(this.root).append(this.mapNode, this.controls.panel, this.detailsNode, this.infoNode, this.tooltip, this.status);
    this.labels = new ClusterLabels(this.mapNode, this.m.clusters, (x, y) => this.project(x, y));
    document.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape') return;
      if (!this.infoNode.hidden) this.toggleInfo(false);  // the top-most panel first: the paper stays open
      else this.unpick();
    });
  }

  buildInfo() {
    const close = el('button', { class: 'cm-close', type: 'button', 'aria-label': 'Close', onclick: () => this.toggleInfo(false) }, '×');
    const sections = this.m.info.map((section) =>
      el('section', {}, el('h3', {}, section.title),
        el('table', {}, el('tbody', {}, section.rows.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v)))))));
    return el('div', { class: 'cm-panel cm-info', id: 'cm-info', hidden: true }, close, el('h2', {}, 'About this map'), sections);
  }

  toggleInfo(on) {
    this.infoNode.hidden = !on;
    this.placeLabels();  // the cluster names move out of its way (and back)
  }

  async start() {
    const raw = await load('points');
    this.timing.points = performance.now();
    this.x = typed(raw.x);
    this.y = typed(raw.y);
    this.years = typed(raw.year);
    this.labelCodes = typed(raw.label);
    this.clusterCodes = (raw.clusters || []).map(typed);
    const n = this.n;
    const rows = new Array(n);
    const kd = new KDBush(n, 16, Float32Array);
    for (let i = 0; i < n; i++) {
      rows[i] = [this.x[i], this.y[i], 0, 1];
      kd.add(this.x[i], this.y[i]);
    }
    kd.finish();
    this.rows = rows;
    this.kd = kd.data;
    this.resize();
    const style = this.m.style;
    const camera = this.initialCamera();
    this.scatter = createScatterplot({
      canvas: this.canvas,
      pointSize: style.point_size,
      opacity: [DIM, style.opacity],
      opacityBy: 'valueB',
      colorBy: 'valueA',
      pointColor: ['#3b6ea8'],
      pointColorHover: '#000000',
      pointColorActive: '#111111',
      pointOutlineWidth: 2,
      pointSizeSelected: 2,
      backgroundColor: '#ffffff',
      actionKeyMap: {},
      deselectOnDblClick: false,
      deselectOnEscape: false,
      cameraTarget: camera.target,
      cameraDistance: camera.distance,
      annotationLineColor: [0.1, 0.1, 0.1, 0.55],
      annotationLineWidth: 1,
    });
    this.homeZoom = this.zoom();  // the whole-map view: zoom 1 for the cluster names
    this.homeDistance = camera.distance;
    this.limitZoomOut();
    this.atHome = true;  // the camera shows the whole map, as at load or after "Reset view"
    this.scatter.subscribe('view', () => this.onView());
    this.scatter.subscribe('pointover', (i) => this.hover(i));
    this.scatter.subscribe('pointout', () => this.unhover());
    this.scatter.subscribe('select', ({ points }) => {
      this.clicks += 1;
      if (points.length === 1) this.pick(points[0]);
    });
    window.addEventListener('mousemove', (e) => {  // anywhere: whether the cursor rests on a panel matters too
      this.mouse = [e.clientX, e.clientY];
      if (e.target instanceof Element && e.target.closest('.cm-panel')) this.unhover();
      this.placeTooltip();
    });
    this.canvas.addEventListener('mouseleave', () => this.unhover());
    this.canvas.addEventListener('wheel', () => { this.atHome = false; }, { passive: true });
    this.canvas.addEventListener('mousedown', (e) => {
      this.pressed = { x: e.clientX, y: e.clientY, clicks: this.clicks };
    });
    window.addEventListener('mouseup', (e) => {  // a drag moved the camera away from the whole-map view
      const p = this.pressed;
      if (p && Math.hypot(e.clientX - p.x, e.clientY - p.y) >= 4) this.atHome = false;
    });
    this.canvas.addEventListener('click', (e) => {  // a click on the background (no point, no drag) closes details
      const p = this.pressed;
      setTimeout(() => {
        if (p && p.clicks === this.clicks && Math.hypot(e.clientX - p.x, e.clientY - p.y) < 4) this.unpick();
      }, 0);
    });
    this.canvas.addEventListener('keydown', (e) => this.onKey(e));
    window.addEventListener('resize', () => this.onResize());
    const layers = ['background', 'density'].filter((key) => this.m[key]);  // (the reference map lowest)
    if (layers.length) {
      this.density = new DensityLayer(this.densityCanvas, () => this.onView());
      for (const key of layers) this.density.add(`data:image/png;base64,${(await load(key)).png}`);
    }
    this.defaultMode = this.controls.color.value;
    await this.setColor(this.defaultMode, { draw: false });
    await this.redraw();
    this.timing.firstDraw = performance.now();
    this.onView();
    await this.restoreState(parseHash(location.hash));
    this.ready = true;
    this.saveState();  // the fragment says what was shown (a row that does not exist, a reversed range: corrected)
    this.status.textContent = this.statusText();
  }

  statusText() {
    const m = this.m;
    let drawn = m.sampled ? `${fmt.format(this.n)} of ${fmt.format(m.n_total)} points drawn (random sample over the density of all)` : plural(this.n, 'point');
    const secs = ((this.timing.firstDraw - this.timing.boot) / 1000).toFixed(1);
    if (this.filter) drawn += ` (${fmt.format(this.filter.length)} in the year range)`;
    return `${drawn} · drawn in ${secs} s · scroll or +/− to zoom, drag or arrow keys to pan, click a point`;
  }

  fail(error) {
    this.error = String(error && error.message ? error.message : error);
    this.status.textContent = `Could not show the map: ${this.error}`;
    this.status.classList.add('cm-error');
  }

  resize() {
    const r = this.mapNode.getBoundingClientRect();
    this.width = r.width;
    this.height = r.height;
  }

  /** A new window size: the controls fold when the window becomes narrow (and unfold when it grows again, if
   * the page folded them), and the whole-map view is fitted again. */
  onResize() {
    const narrow = isNarrow();
    const folded = this.controls.panel.classList.contains('cm-folded');
    if (narrow && !this.narrow && !folded) {
      setFolded(this.controls, true);
      this.autoFolded = true;
    } else if (!narrow && this.narrow && folded && this.autoFolded) {
      setFolded(this.controls, false);
      this.autoFolded = false;
    }
    this.narrow = narrow;
    return this.refit();
  }

  /** The whole-map view fitted again (and the camera moved there when the user has not moved away). */
  async refit() {
    await this.moving;  // a "Reset view" still under way would end at the old window's view
    this.resize();
    const cam = this.initialCamera();
    this.homeZoom *= this.homeDistance / cam.distance;
    this.homeDistance = cam.distance;
    this.limitZoomOut();
    if (this.atHome) await this.scatter.zoomToLocation(cam.target, cam.distance);
    this.placeDetails();
    if (this.picked !== null) this.keepClear(this.picked);  // the panels' new places may cover it
    this.onView();
  }

  /** Zooming out stops at ZOOM_OUT_LIMIT times the whole-map view (farther, the map is a speck under its names),
   * zooming in at ZOOM_IN_LIMIT times. */
  limitZoomOut() {
    this.scatter.get('camera').setScaleBounds([this.homeZoom / ZOOM_OUT_LIMIT, this.homeZoom * ZOOM_IN_LIMIT]);
  }

  /** Screen position (in the map's CSS pixels) of a point in the writer's normalised coordinates. */
  project(x, y) {
    const v = this.scatter.get('cameraView');
    const aspect = this.width / this.height;
    const cx = (v[0] * x + v[4] * y + v[12]) / aspect;
    const cy = v[1] * x + v[5] * y + v[13];
    return [(this.width * (cx + 1)) / 2, this.height * (0.5 - cy / 2)];
  }

  zoom() {
    const v = this.scatter.get('cameraView');
    return Math.hypot(v[0], v[1]);
  }

  /** Boxes of the panels over the map, and of the open paper, in map pixels: cluster names are kept out of
   * them. */
  obstacles() {
    const origin = this.mapNode.getBoundingClientRect();
    const boxes = [this.controls.panel, this.detailsNode, this.infoNode, this.status]
      .filter((node) => !node.hidden)
      .map((node) => {
        const r = node.getBoundingClientRect();
        return [r.left - origin.left, r.top - origin.top, r.right - origin.left, r.bottom - origin.top];
      });
    if (this.picked !== null) {
      const [sx, sy] = this.project(this.x[this.picked], this.y[this.picked]);
      boxes.push([sx - 12, sy - 12, sx + 12, sy + 12]);
    }
    return boxes;
  }

  /** Camera target and distance that fit the drawn points into the part of the map right of the panel. */
  initialCamera() {
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (let i = 0; i < this.n; i++) {
      const x = this.x[i];
      const y = this.y[i];
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
    if (this.m.sampled || !(x0 <= x1)) [x0, x1, y0, y1] = [-1, 1, -1, 1];
    if (x1 - x0 < 1e-6 && y1 - y0 < 1e-6) {  // one point, or all at one place: the whole [-1, 1] square around it
      [x0, x1, y0, y1] = [x0 - 1, x1 + 1, y0 - 1, y1 + 1];
    }
    const W = this.width;
    const H = this.height;
    const pad = 24;
    const panel = this.controls.panel.getBoundingClientRect();
    const folded = this.controls.panel.classList.contains('cm-folded');  // a title bar: the map goes below it
    const left = !folded && W - panel.right > 480 ? panel.right + pad : pad;
    const [L, R, T, B] = [left, W - pad, folded ? panel.bottom + 8 : pad, H - pad - 16];
    const d = Math.max(((x1 - x0) * H) / (2 * (R - L)), ((y1 - y0) * H) / (2 * (B - T)), 1e-6);
    const aspect = W / H;
    const tx = (x0 + x1) / 2 - ((L + R) / W - 1) * d * aspect;
    const ty = (y0 + y1) / 2 - (1 - (T + B) / H) * d;
    return { target: [tx, ty], distance: d };
  }

  /** The map from the keyboard (the canvas takes focus with Tab): arrows pan a fifth of the view, + and −
   * zoom by 1.25, 0 (or Home) shows the whole map, Enter opens the paper nearest the middle of the view. */
  onKey(e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const pan = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] }[e.key];
    const zoom = { '+': 1 / 1.25, '=': 1 / 1.25, '-': 1.25, '_': 1.25 }[e.key];
    if (e.key === '0' || e.key === 'Home') {
      this.resetView();
    } else if (e.key === 'Enter') {
      const row = this.nearestToMiddle();
      if (row >= 0) this.pick(row);
    } else if (pan || zoom) {
      const [tx, ty] = this.scatter.get('cameraTarget');
      const d = this.scatter.get('cameraDistance');
      const step = 0.4 * d;
      this.atHome = false;
      this.unhover();  // the point under the cursor moves away
      const to = zoom ? Math.min(Math.max(d * zoom, this.homeDistance / ZOOM_IN_LIMIT), ZOOM_OUT_LIMIT * this.homeDistance) : d;
      this.scatter.zoomToLocation(pan ? [tx + pan[0] * step, ty + pan[1] * step] : [tx, ty], to);
    } else {
      return;
    }
    e.preventDefault();
  }

  /** The drawn point (in the year range) nearest the middle of the view, or -1. */
  nearestToMiddle() {
    let best = -1;
    let bestDistance = Infinity;
    for (let i = 0; i < this.n; i++) {
      if (this.keep && !this.keep[i]) continue;
      const [sx, sy] = this.project(this.x[i], this.y[i]);
      const d = (sx - this.width / 2) ** 2 + (sy - this.height / 2) ** 2;
      if (d < bestDistance) [best, bestDistance] = [i, d];
    }
    return best;
  }

  resetView() {
    const cam = this.initialCamera();
    this.atHome = true;
    this.moving = this.scatter.zoomToLocation(cam.target, cam.distance, { transition: true, transitionDuration: 400 })
      .then(() => {
        if (this.picked !== null) this.keepClear(this.picked);  // the whole map, but the paper not under its panel
      });
  }

  onView() {
    if (!this.scatter) return;
    this.saveState();
    this.placeLabels();
    if (this.density) this.density.draw((x, y) => this.project(x, y), this.width, this.height);
  }

  /** The cluster names placed again, clear of the panels open now. */
  placeLabels() {
    if (!this.scatter) return;
    this.labels.update(this.zoom() / this.homeZoom, this.width, this.height, this.obstacles());
  }

  redraw() {
    const options = {
      spatialIndex: this.kd,
      preventFilterReset: true,
      zDataType: 'categorical',
      wDataType: 'continuous',
    };
    if (this.selected) options.select = this.selected;
    this.drawing = this.drawing.then(() => this.scatter.draw(this.rows, options)).then(() => {
      if (this.filter) this.scatter.filter(this.filter, { preventEvent: true });
    });
    return this.drawing;
  }

  // ---- colour modes -------------------------------------------------------------------------------------------

  async setColor(mode, { draw = true } = {}) {
    this.mode = mode;
    this.saveState();
    this.labels.minLevel = mode.startsWith('cluster:') ? Number(mode.slice(8)) : 0;  // names of the colours' level
    this.onView();
    this.controls.wordsBox.hidden = mode !== 'words';
    let spec;
    let title = '';
    if (mode === 'year' && this.years) {
      spec = yearMode(this.years, this.m.years);
      title = 'Year';
    } else if (mode === 'label' && this.labelCodes) {
      const L = this.m.labels;
      spec = categoryMode(this.labelCodes, L.names, L.order, { coloured: L.top });
      title = L.title || 'Label';
    } else if (mode.startsWith('cluster:')) {
      const i = Number(mode.slice(8));
      const level = this.m.clusters[i];
      spec = regionMode(this.clusterCodes[i], level.names, level.order, level.colours);
      title = `Clusters: ${level.name}`;
    } else if (mode === 'words') {
      const words = distinctTokens(this.controls.words.value);
      if (words.length && this.index) {
        this.setStatusBusy('Finding the words…');
        spec = wordsMode(await this.index.anyMask(words), words);
        this.setStatusBusy(null);
      } else {
        spec = plainMode(this.n);
        spec.legend = { kind: 'categories', items: [] };
      }
      title = words.length ? 'Abstracts with any of the words' : 'Type words (or pick excess words) to colour by';
    } else {
      spec = plainMode(this.n);
    }
    if (mode !== this.mode) return;
    const z = spec.z;
    const rows = this.rows;
    for (let i = 0; i < this.n; i++) rows[i][2] = z[i];
    this.scatter.set({ pointColor: spec.palette });
    this.spec = spec;
    this.setOrder();
    this.legendTitle = title;
    this.renderLegend();
    this.onView();
    if (draw) await this.redraw();
  }

  /** The legend of the colour mode, its counts over the points in the year range. */
  renderLegend() {
    const { spec } = this;
    if (!spec) return;
    countLegend(spec.legend, spec.z, this.keep);
    const counted = spec.legend && spec.legend.kind !== 'bar' && spec.legend.items;  // (a bar counts nothing)
    const where = [this.keep && 'in the year range', this.m.sampled && 'of the drawn sample'].filter(Boolean);
    const title = counted && where.length ? `${this.legendTitle} (${where.join(', ')})` : this.legendTitle;
    renderLegend(this.controls.legend, spec.legend, title, this.m.background);
  }

  /** Colour by the words now in the words box (switching to that mode). */
  setWords() {
    syncPicks(this.controls);
    this.controls.color.value = 'words';
    return this.setColor('words');
  }

  /** Draw the highlighted points last (on top): the word overlay's matches in the words mode, else the search's
   * (or the natural order when there are none). */
  setOrder() {
    const mask = this.mode === 'words' ? this.spec && this.spec.hits : this.hitMask;
    if (!mask) {
      this.scatter.set({ pointOrder: null });
      return;
    }
    const order = new Array(this.n);
    let a = 0;
    let b = this.n - 1;
    for (let i = this.n - 1; i >= 0; i--) {
      if (mask[i]) order[b--] = i;
      else order[a++] = i;
    }
    this.scatter.set({ pointOrder: order });
  }

  setStatusBusy(text) {
    this.status.textContent = text || this.statusText();
  }

  // ---- search ---------------------------------------------------------------------------------------------------

  async search(query) {
    this.saveState();
    const out = this.controls.searchCount;
    if (!this.index) return null;
    const { tokens, phrases } = parseQuery(query);
    const rows = this.rows;
    delete out.dataset.count;
    delete out.dataset.phrases;
    if (!tokens.length) {
      this.searchSeq = (this.searchSeq || 0) + 1;
      this.hits = null;
      this.hitMask = null;
      for (let i = 0; i < this.n; i++) rows[i][3] = 1;
      out.textContent = query.trim() ? 'Type words of two or more letters.' : 'Whole words, all must occur; "quotes" for a phrase.';
      this.setOrder();
      await this.redraw();
      if (this.picked !== null) await this.pick(this.picked);  // its words no longer marked
      return null;
    }
    out.textContent = 'Searching…';
    const seq = (this.searchSeq = (this.searchSeq || 0) + 1);
    const result = await this.index.all(query);
    if (seq !== this.searchSeq) return null;
    let hits = result.rows;
    let checked = phrases.length === 0;  // quoted phrases are checked in the texts of the abstracts with all words
    if (!checked && hits.length && this.texts.chunksOf(hits) <= PHRASE_CHUNKS) {
      out.textContent = `Checking the phrase in ${plural(hits.length, 'abstract')}…`;
      hits = await this.texts.withPhrases(hits, phrases, (done) => {
        if (seq === this.searchSeq) out.textContent = `Checking the phrase: ${fmt.format(done)} of ${fmt.format(result.rows.length)}…`;
      });
      if (seq !== this.searchSeq) return null;
      checked = true;
    }
    const mask = new Uint8Array(this.n);
    for (let j = 0; j < hits.length; j++) mask[hits[j]] = 1;
    for (let i = 0; i < this.n; i++) rows[i][3] = mask[i];
    this.hits = hits;
    this.hitMask = mask;
    this.hitTokens = tokens;
    this.hitPhrases = { phrases, checked: checked || hits.length === 0 };
    const count = hits.length;
    this.showSearchCount();
    out.dataset.count = String(count);
    if (phrases.length) out.dataset.phrases = this.hitPhrases.checked ? 'checked' : 'unchecked';
    this.setOrder();
    await this.redraw();
    if (this.picked !== null && seq === this.searchSeq) await this.pick(this.picked);  // the new words marked
    return count;
  }

  /** The search's count line: matches, and how many of them are in the year range. */
  showSearchCount() {
    if (!this.hits) return;
    const count = this.hits.length;
    const { phrases, checked } = this.hitPhrases;
    const inPhrase = new Set(checked ? phrases.flat() : []);
    const parts = [...phrases.filter(() => checked).map((p) => `"${p.join(' ')}"`),
      ...this.hitTokens.filter((t) => !inPhrase.has(t))];
    const words = `${parts.length > 1 ? 'all of ' : ''}${parts.join(', ')}`;
    let text = count ? `${plural(count, 'abstract')} ${count === 1 ? 'contains' : 'contain'} ${words}` : `No abstract contains ${words}`;
    if (!checked) text += ` (the phrase is checked only where they lie in at most ${PHRASE_CHUNKS} text chunks: add words to narrow it)`;
    if (this.m.sampled) text += ' (in the drawn sample)';
    if (this.keep && count) {
      const inRange = this.hits.filter((r) => this.keep[r]).length;
      text += `; ${fmt.format(inRange)} in the year range`;
    }
    this.controls.searchCount.textContent = text;
  }

  // ---- year filter ----------------------------------------------------------------------------------------------

  inYears(row) {
    const y = this.years[row];
    return y >= this.yearRange[0] && y <= this.yearRange[1];
  }

  async setYears(from, to) {
    if (!this.years) return;
    this.unhover();  // the hovered point may leave the range
    const { min, max } = this.m.years;
    if (!(from <= to)) [from, to] = [to, from];
    // whole years (a typed 2011.6 is 2012), within the map's: the boxes show what applies
    const clamp = (year) => Math.min(Math.max(Math.round(year), Math.floor(min)), Math.ceil(max));
    [from, to] = [clamp(from), clamp(to)];
    [this.controls.yearFrom.value, this.controls.yearTo.value] = [String(from), String(to)];
    this.yearRange = [from, to];
    this.saveState();
    if (from <= min && to >= max) {
      this.filter = null;
      this.keep = null;
      this.controls.yearCount.textContent = '';
      this.labels.present = null;
      this.status.textContent = this.statusText();
      this.renderLegend();
      this.showSearchCount();
      this.scatter.unfilter({ preventEvent: true });
      this.onView();  // the names of regions outside the range
      this.repick();
      return;
    }
    const filter = [];
    const keep = new Uint8Array(this.n);
    for (let i = 0; i < this.n; i++) {
      if (this.inYears(i)) {
        filter.push(i);
        keep[i] = 1;
      }
    }
    this.filter = filter;
    this.keep = keep;
    this.labels.present = this.clusterCodes.map((codes, i) => {  // regions with a point in the range keep their name
      const present = new Uint8Array(this.m.clusters[i].names.length);
      for (const row of filter) present[codes[row]] = 1;
      return present;
    });
    this.controls.yearCount.textContent = plural(filter.length, 'point');
    this.status.textContent = this.statusText();
    this.renderLegend();
    this.showSearchCount();
    await this.drawing;
    await this.scatter.filter(filter, { preventEvent: true });
    this.onView();  // the names of regions outside the range
    this.repick();
  }

  /** After the year filter changed: a picked point it hides is closed; else its neighbour lines are redrawn. */
  repick() {
    if (this.picked === null) return;
    if (this.keep && !this.keep[this.picked]) this.unpick();
    else this.pick(this.picked);
  }

  // ---- hover ----------------------------------------------------------------------------------------------------

  hover(row) {
    // a point the camera moves under a cursor that rests on a panel is not hovered
    const under = this.mouse && document.elementFromPoint(this.mouse[0], this.mouse[1]);
    if (under && under.closest('.cm-panel')) return;
    this.hovered = row;
    const tip = this.tooltip;
    const title = this.texts.titleNow(row);
    clear(tip).append(
      el('div', { class: 'cm-tooltip-title' }, title === undefined ? '…' : shownTitle(title)),
      el('div', { class: 'cm-tooltip-meta' }, this.metaOf(row).join(' · ')),
    );
    tip.dataset.row = String(row);
    tip.hidden = false;
    this.placeTooltip();
    if (title === undefined) {
      this.texts.title(row).then((t) => {
        if (this.hovered === row) tip.firstChild.textContent = shownTitle(t);
      });
    }
  }

  unhover() {
    this.hovered = null;
    this.tooltip.hidden = true;
  }

  placeTooltip() {
    if (this.tooltip.hidden || !this.mouse) return;
    const [mx, my] = this.mouse;
    const w = this.tooltip.offsetWidth;
    const h = this.tooltip.offsetHeight;
    const left = mx + 14 + w > window.innerWidth ? mx - 14 - w : mx + 14;
    const top = my + 14 + h > window.innerHeight ? my - 14 - h : my + 14;
    this.tooltip.style.transform = `translate(${Math.max(0, left)}px, ${Math.max(0, top)}px)`;
  }

  metaOf(row) {
    const meta = [];
    if (this.years && !Number.isNaN(this.years[row])) {
      const y = this.years[row];
      meta.push(Number.isInteger(y) ? String(y) : y.toFixed(2));
    }
    if (this.labelCodes) {
      const code = this.labelCodes[row];
      if (code < this.m.labels.names.length) meta.push(this.m.labels.names[code]);
    }
    return meta;
  }

  // ---- a clicked point ------------------------------------------------------------------------------------------

  async pick(row) {
    this.picked = row;
    this.unhover();  // the details take its place (a tooltip would cover them)
    const [record, title] = await Promise.all([this.texts.record(row), this.texts.title(row)]);
    if (this.picked !== row) return;
    const hidden = (nb) => this.keep !== null && (nb.row >= 0 ? !this.keep[nb.row]  // outside the year range
      : !(nb.year >= this.yearRange[0] && nb.year <= this.yearRange[1]));  // (an undrawn one: by its own year)
    const drawn = record.neighbours.filter((nb) => nb.row >= 0 && !hidden(nb)).map((nb) => nb.row);
    this.selected = [row, ...drawn];
    this.scatter.select(this.selected, { preventEvent: true });
    const x0 = this.x[row];
    const y0 = this.y[row];
    const lines = record.neighbours.filter((nb) => !hidden(nb)).map((nb) => {
      const [x1, y1] = nb.row >= 0 ? [this.x[nb.row], this.y[nb.row]] : [nb.x, nb.y];
      return { vertices: [[x0, y0], [x1, y1]] };
    });
    this.lines = lines;
    this.scatter.drawAnnotations(lines);
    const clusters = this.m.clusters
      .map((level, i) => [level.name, level.names[this.clusterCodes[i][row]]])
      .filter(([, name]) => name !== undefined);
    this.details.show({
      row,
      title,
      meta: this.metaOf(row),
      clusters,
      record,
      pmids: Boolean(this.m.pmids),
      hidden,
      nbrTitle: (r) => this.texts.title(r),
      hubs: this.m.hubs || {},
      marks: new Set([...(this.hits ? this.hitTokens : []),
        ...(this.mode === 'words' ? distinctTokens(this.controls.words.value) : [])]),
    });
    this.detailsNode.dataset.row = String(row);
    this.placeDetails();
    this.onView();
    this.keepClear(row);
  }

  /** Where the controls and the details would overlap (a narrow window), the details go below the controls, or,
   * with too little room left there, under them, so that neither hides the other's buttons. */
  placeDetails() {
    const node = this.detailsNode;
    node.style.top = '';
    node.style.maxHeight = '';
    this.controls.panel.classList.remove('cm-above');
    if (node.hidden) return;
    const c = this.controls.panel.getBoundingClientRect();
    if (node.getBoundingClientRect().left >= c.right + 8) return;
    const root = this.root.getBoundingClientRect();
    const top = c.bottom - root.top + 8;
    if (root.height - top >= 160) {
      node.style.top = `${top}px`;
      node.style.maxHeight = `${root.height - top - 48}px`;
    } else {
      this.controls.panel.classList.add('cm-above');
    }
  }

  /** A picked point that is off screen or under a panel: the map pans it to the middle of the free part between
   * the panels (or left of the details panel, where the controls leave too little room), and into view
   * vertically where it is above or below the window. */
  keepClear(row) {
    const origin = this.mapNode.getBoundingClientRect();
    const box = (node) => {
      const r = node.getBoundingClientRect();
      return [r.left - origin.left, r.top - origin.top, r.right - origin.left, r.bottom - origin.top];
    };
    const folded = this.controls.panel.classList.contains('cm-folded');  // a title bar over the map's top
    const controls = box(this.controls.panel);
    const details = this.detailsNode.hidden ? null : box(this.detailsNode);
    const [sx, sy] = this.project(this.x[row], this.y[row]);
    const m = 12;
    const top = folded ? controls[3] : 0;
    const offY = sy < top + m || sy > this.height - m;
    const goalY = (top + this.height) / 2;
    const atY = offY ? goalY : sy;  // where the vertical pan (if any) leaves it: the panels there count
    const under = (b) => b !== null && sx > b[0] - m && sx < b[2] + m && atY > b[1] - m && atY < b[3] + m;
    const offX = sx < m || sx > this.width - m || under(details) || (!folded && under(controls));
    if (!offX && !offY) return;
    const [left, right] = [folded ? 0 : controls[2], details ? details[0] : this.width];
    const goalX = right - left >= 60 ? (left + right) / 2 : right / 2;
    const [tx, ty] = this.scatter.get('cameraTarget');
    const d = this.scatter.get('cameraDistance');
    const unit = (2 * d) / this.height;  // the map moves 2 d / height data units per pixel
    // (the page's own move: atHome stays, so that a new window size still fits the whole map, then pans again)
    this.scatter.zoomToLocation([tx + (offX ? sx - goalX : 0) * unit, ty + (offY ? goalY - sy : 0) * unit], d,
      { transition: true, transitionDuration: 300 });
  }

  unpick() {
    this.picked = null;
    this.saveState();
    if (!this.selected) return;
    this.selected = null;
    const focused = this.detailsNode.contains(document.activeElement);
    this.details.hide();
    if (focused) this.canvas.focus({ preventScroll: true });  // a keyboard reader goes on from the map, not from the page's top
    this.scatter.deselect({ preventEvent: true });
    this.scatter.clearAnnotations();
    this.lines = [];
    this.onView();
  }

  // ---- the state in the URL -------------------------------------------------------------------------------------

  /** What a link should show again: see hashstate.js (the camera only where it is not the whole-map view). */
  viewState() {
    const c = this.controls;
    const s = {};
    if (this.mode && this.mode !== this.defaultMode) s.c = this.mode;
    if (this.mode === 'words' && c.words.value.trim()) s.w = c.words.value.trim();
    if (c.search && c.search.value.trim()) s.q = c.search.value.trim();
    if (this.keep) s.y = this.yearRange;
    const home = this.initialCamera();
    const [tx, ty] = this.scatter.get('cameraTarget');
    const d = this.scatter.get('cameraDistance');
    if (Math.abs(d / home.distance - 1) > 1e-3 || Math.hypot(tx - home.target[0], ty - home.target[1]) > 1e-3 * d) {
      s.v = [tx, ty, d];
    }
    if (this.picked !== null) s.p = this.picked;
    return s;
  }

  /** Show the state of a link (unknown colour modes, rows and the like are left out). */
  async restoreState(s) {
    const c = this.controls;
    if (s.w) c.words.value = s.w;
    if (s.c && [...c.color.options].some((o) => o.value === s.c) && s.c !== this.mode) {
      c.color.value = s.c;
      syncPicks(c);
      await this.setColor(s.c);
    }
    if (s.q && this.index && c.search) {
      c.search.value = s.q;
      await this.search(s.q);
    }
    if (s.y && this.years && c.yearFrom) {
      [c.yearFrom.value, c.yearTo.value] = [String(s.y[0]), String(s.y[1])];
      await this.setYears(s.y[0], s.y[1]);
    }
    if (s.v) {  // (a crafted link cannot look far off the map, or closer than the zoom-in limit)
      this.atHome = false;
      const d = Math.min(Math.max(s.v[2], this.homeDistance / ZOOM_IN_LIMIT), ZOOM_OUT_LIMIT * this.homeDistance);
      const clamp = (v) => Math.min(Math.max(v, -1 - d), 1 + d);  // the map fills [-1, 1]^2
      this.scatter.zoomToLocation([clamp(s.v[0]), clamp(s.v[1])], d);
    }
    if (s.p !== undefined && s.p < this.n && !(this.keep && !this.keep[s.p])) await this.pick(s.p);
  }

  // ---- test and automation hooks --------------------------------------------------------------------------------

  api() {
    const app = this;
    return {
      get ready() {
        return app.ready;
      },
      get error() {
        return app.error;
      },
      get n() {
        return app.n;
      },
      get timing() {
        return { ...app.timing };
      },
      /** Client (page) coordinates of point i as drawn now. */
      screenPosition(i) {
        const r = app.canvas.getBoundingClientRect();
        const [sx, sy] = app.project(app.x[i], app.y[i]);
        return [r.left + sx, r.top + sy];
      },
      /** Client coordinates of every point, flat [x0, y0, x1, y1, ...]. */
      screenPositions() {
        const r = app.canvas.getBoundingClientRect();
        const out = new Array(2 * app.n);
        for (let i = 0; i < app.n; i++) {
          const [sx, sy] = app.project(app.x[i], app.y[i]);
          out[2 * i] = r.left + sx;
          out[2 * i + 1] = r.top + sy;
        }
        return out;
      },
      /** Client coordinates of writer coordinates (x, y), e.g. of a reference map's points. */
      screenOf(x, y) {
        const r = app.canvas.getBoundingClientRect();
        const [sx, sy] = app.project(x, y);
        return [r.left + sx, r.top + sy];
      },
      /** The lines drawn from the open paper to its neighbours, as [[x0, y0], [x1, y1]] in writer coordinates. */
      lines: () => (app.lines || []).map((line) => line.vertices),
      /** Writer coordinates (normalised to [-1, 1]) of point i. */
      dataPosition: (i) => [app.x[i], app.y[i]],
      zoom: () => app.zoom(),
      lookAt: (target, distance) => app.scatter.zoomToLocation(target, distance),
      search: (q) => {
        app.controls.search.value = q;
        return app.search(q);
      },
      /** The number of abstracts a query matches, from the index alone (nothing is redrawn). */
      count: async (q) => (app.index ? ((await app.index.all(q)).rows || []).length : null),
      colorBy: (mode) => {
        app.controls.color.value = mode;
        return app.setColor(mode);
      },
      words: (text) => {
        app.controls.words.value = text;
        return app.setWords();
      },
      years: (from, to) => app.setYears(from, to),
      pick: (i) => app.pick(i),
      labelLevel: () => app.labels.shownLevel,
      idLink: (id) => idLink(id, Boolean(app.m.pmids)),
      scatter: () => app.scatter,
    };
  }
}
