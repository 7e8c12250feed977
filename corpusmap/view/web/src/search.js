// Word search without the texts: an inverted index (token -> sorted rows), split into buckets by CRC-32 of the
// token, each bucket a lazily loaded data script. A query loads only the buckets of its tokens.
// Posting lists are LEB128 varints of row gaps, or a bitmap of n bits where that is smaller.

import { typed } from './decode.js';
import { load } from './store.js';
import { crc32, distinctTokens } from './tokens.js';

export class SearchIndex {
  constructor(meta, n) {
    this.buckets = meta.buckets;
    this.n = n;
    this.pad = String(meta.buckets - 1).length;
    this.loaded = new Map();
  }

  bucketKey(token) {
    const b = crc32(token) % this.buckets;
    return `index/${String(b).padStart(this.pad, '0')}`;
  }

  async bucket(key) {
    let b = this.loaded.get(key);
    if (!b) {
      const raw = await load(key);
      const position = new Map();
      raw.tok.forEach((t, i) => position.set(t, i));
      b = { position, df: typed(raw.df), off: typed(raw.off), bitmap: typed(raw.bitmap), data: typed(raw.data) };
      this.loaded.set(key, b);
    }
    return b;
  }

  /** Sorted rows of the abstracts that contain token (a Uint32Array, empty if none). */
  async postings(token) {
    const b = await this.bucket(this.bucketKey(token));
    const i = b.position.get(token);
    if (i === undefined) return new Uint32Array(0);
    const out = new Uint32Array(b.df[i]);
    const data = b.data;
    const end = b.off[i + 1];
    if (b.bitmap[i]) {
      let k = 0;
      for (let p = b.off[i]; p < end; p++) {
        let byte = data[p];
        const base = (p - b.off[i]) * 8;
        while (byte) {
          const bit = 31 - Math.clz32(byte & -byte);
          out[k++] = base + bit;
          byte &= byte - 1;
        }
      }
      return out;
    }
    let k = 0;
    let row = 0;
    let value = 0;
    let shift = 0;
    for (let p = b.off[i]; p < end; p++) {
      const byte = data[p];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte & 0x80) {
        shift += 7;
      } else {
        row = k === 0 ? value : row + value;
        out[k++] = row;
        value = 0;
        shift = 0;
      }
    }
    return out;
  }

  /** Rows containing every token of the query (whole tokens, case-insensitive). */
  async all(query) {
    const tokens = distinctTokens(query);
    if (tokens.length === 0) return { tokens, rows: null };
    const lists = await Promise.all(tokens.map((t) => this.postings(t)));
    lists.sort((a, b) => a.length - b.length);
    let rows = lists[0];
    for (let j = 1; j < lists.length && rows.length; j++) rows = intersect(rows, lists[j]);
    return { tokens, rows };
  }

  /** Per point, 1 if its abstract contains at least one of words, else 0. */
  async anyMask(words) {
    const mask = new Uint8Array(this.n);
    const lists = await Promise.all(words.map((t) => this.postings(t)));
    for (const list of lists) for (let j = 0; j < list.length; j++) mask[list[j]] = 1;
    return mask;
  }
}

function intersect(a, b) {
  const out = new Uint32Array(Math.min(a.length, b.length));
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      out[k++] = a[i];
      i++;
      j++;
    } else if (a[i] < b[j]) i++;
    else j++;
  }
  return out.subarray(0, k);
}
