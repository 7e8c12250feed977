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

/** text as parts for el(): the whole tokens among words (a Set of tokens) as <mark> elements, the rest text. */
export function markWords(text, words, mark) {
  if (!words || !words.size) return [text];
  const parts = [];
  let last = 0;
  for (const match of String(text).matchAll(WORD)) {
    if (!words.has(match[0].toLowerCase())) continue;
    parts.push(text.slice(last, match.index), mark(match[0]));
    last = match.index + match[0].length;
  }
  parts.push(text.slice(last));
  return parts;
}

/** Distinct tokens in first-seen order. */
export function distinctTokens(text) {
  return [...new Set(tokenize(text))];
}

/** A search query: its distinct tokens (every one must occur) and its quoted phrases as token lists of two or
 * more (each must occur as consecutive tokens), e.g. `"machine translation" low-resource`. */
export function parseQuery(query) {
  const phrases = [];
  for (const match of String(query).matchAll(/"([^"]*)"/g)) {
    const words = tokenize(match[1]);
    if (words.length > 1 && !phrases.some((p) => p.join(' ') === words.join(' '))) phrases.push(words);
  }
  return { tokens: distinctTokens(query), phrases };
}

/** Whether the token list holds phrase (a token list) as consecutive tokens. */
export function hasPhrase(tokens, phrase) {
  for (let i = 0; i + phrase.length <= tokens.length; i++) {
    let j = 0;
    while (j < phrase.length && tokens[i + j] === phrase[j]) j++;
    if (j === phrase.length) return true;
  }
  return false;
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
