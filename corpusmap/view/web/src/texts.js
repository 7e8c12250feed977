// Titles, abstracts, ids and high-D neighbours, streamed in chunks by row range so that a big map never holds
// all its texts in the browser. Recently used chunks are kept; older ones are forgotten.

import { typed } from './decode.js';
import { forget, load, peek } from './store.js';
import { hasPhrase, tokenize } from './tokens.js';

const KEEP = 48;

class Chunks {
  constructor(prefix, rows, count, prepare) {
    this.prefix = prefix;
    this.rows = rows;
    this.pad = String(Math.max(count - 1, 0)).length;
    this.prepare = prepare;
    this.ready = new Map();
  }

  key(row) {
    return `${this.prefix}/${String(Math.floor(row / this.rows)).padStart(this.pad, '0')}`;
  }

  now(row) {
    const key = this.key(row);
    let chunk = this.ready.get(key);
    if (!chunk) {
      const raw = peek(key);
      if (!raw) return null;
      chunk = this.remember(key, raw);
    }
    return chunk;
  }

  async get(row) {
    const key = this.key(row);
    const chunk = this.ready.get(key);
    if (chunk) {
      this.ready.delete(key);
      this.ready.set(key, chunk);
      return chunk;
    }
    return this.remember(key, await load(key));
  }

  remember(key, raw) {
    const chunk = this.prepare(raw);
    this.ready.set(key, chunk);
    while (this.ready.size > KEEP) {
      const old = this.ready.keys().next().value;
      this.ready.delete(old);
      forget(old);
    }
    return chunk;
  }
}

export class Texts {
  constructor(manifest) {
    const c = manifest.chunks;
    this.k = manifest.k;
    this.titles = new Chunks('titles', c.title_rows, c.title_count, (raw) => raw);
    this.records = new Chunks('texts', c.text_rows, c.text_count, (raw) => ({
      ...raw,
      nbr: typed(raw.nbr),
    }));
  }

  /** The title of row if its chunk is loaded, else undefined. */
  titleNow(row) {
    const chunk = this.titles.now(row);
    return chunk ? chunk.title[row - chunk.start] : undefined;
  }

  async title(row) {
    const chunk = await this.titles.get(row);
    return chunk.title[row - chunk.start];
  }

  /** The text chunks that hold rows (sorted): the cost of reading their texts. */
  chunksOf(rows) {
    const keys = new Set();
    for (let j = 0; j < rows.length; j++) keys.add(Math.floor(rows[j] / this.records.rows));
    return keys.size;
  }

  /** Of rows (sorted), those whose title and abstract hold every phrase, as the search index tokenised them
   * (title, a line break, abstract). onProgress(done) is told every 500 rows. */
  async withPhrases(rows, phrases, onProgress = () => {}) {
    const out = [];
    for (let j = 0; j < rows.length; j++) {
      const row = rows[j];
      const [title, chunk] = await Promise.all([this.title(row), this.records.get(row)]);
      const abstract = chunk.abstract ? chunk.abstract[row - chunk.start] : null;
      const tokens = tokenize(`${title ?? ''}\n${abstract ?? ''}`);
      if (phrases.every((phrase) => hasPhrase(tokens, phrase))) out.push(row);
      if (j % 500 === 499) onProgress(j + 1);
    }
    return Uint32Array.from(out);
  }

  /**
   * {abstract, id, doi, neighbours: [{row, title, id, x, y, year}]} of row. In the stored rows -1 is a neighbour outside
   * the drawn sample (its title, id, position and year follow in `out`) and -2 no neighbour.
   */
  async record(row) {
    const chunk = await this.records.get(row);
    const j = row - chunk.start;
    const neighbours = [];
    if (chunk.nbr && this.k) {
      const outside = chunk.out ? chunk.out[j] : [];
      let o = 0;
      for (let m = 0; m < this.k; m++) {
        const r = chunk.nbr[j * this.k + m];
        if (r >= 0) neighbours.push({ row: r });
        else if (r === -1 && outside && o < outside.length) {
          const [title, id, x, y, year] = outside[o++];
          neighbours.push({ row: -1, title, id, x, y, year });
        }
      }
    }
    return { abstract: chunk.abstract ? chunk.abstract[j] : null, id: chunk.id ? chunk.id[j] : null,
      doi: chunk.doi ? chunk.doi[j] : null, neighbours };
  }
}
