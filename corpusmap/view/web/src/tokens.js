// Word tokens exactly as corpusmap.tokens.tokenize in Python: lower-case, then maximal runs of word characters
// (Python's \w: letters, digits, underscore) of at least two characters, i.e. the pattern \b\w\w+\b.

const WORD = /[\p{L}\p{N}_]+/gu;

export function tokenize(text) {
  const out = [];
  for (const match of String(text).toLowerCase().matchAll(WORD)) {
    const token = match[0];
    if (token.length >= 2 && [...token].length >= 2) out.push(token);
  }
  return out;
}

/** Distinct tokens in first-seen order. */
export function distinctTokens(text) {
  return [...new Set(tokenize(text))];
}

let table = null;

/** CRC-32 (zlib's) of the UTF-8 bytes of s: the bucket hash shared with the Python writer. */
export function crc32(s) {
  if (!table) {
    table = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[i] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const b of new TextEncoder().encode(s)) crc = table[(crc ^ b) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
