// What the reader is looking at, kept in the URL's fragment (#p=12&q=cell&c=year&y=2013-2015&v=0.1,0.2,0.5), so
// that a reload shows it again and a link to the file shares it. Fragments work from file:// (no server).

const KEYS = ['c', 'w', 'q', 'y', 'v', 'p'];

/** The state in a fragment: {c: colour mode, w: words, q: search, y: [from, to], v: [x, y, distance], p: row}. */
export function parseHash(hash) {
  const params = new URLSearchParams(String(hash || '').replace(/^#/, ''));
  const out = {};
  if (params.get('c')) out.c = params.get('c');
  if (params.get('w')) out.w = params.get('w');
  if (params.get('q')) out.q = params.get('q');
  const numbers = (key, n) => {
    const text = params.get(key) || '';
    // a year range is FROM-TO, either of them negative (-300--250: 300 to 250 BCE)
    const match = key === 'y' ? /^(-?[^-]+)-(-?[^-]+)$/.exec(text) : null;
    const parts = (key === 'y' ? (match ? match.slice(1) : []) : text.split(',')).map(Number);
    return parts.length === n && parts.every(Number.isFinite) ? parts : null;
  };
  if (numbers('y', 2)) out.y = numbers('y', 2);
  if (numbers('v', 3) && numbers('v', 3)[2] > 0) out.v = numbers('v', 3);
  const p = Number(params.get('p'));
  if (params.has('p') && Number.isInteger(p) && p >= 0) out.p = p;
  return out;
}

/** The fragment of a state (keys in a fixed order; empty values left out). */
export function formatHash(state) {
  const params = new URLSearchParams();
  for (const key of KEYS) {
    const value = state[key];
    if (value === undefined || value === null || value === '') continue;
    if (key === 'y') params.set(key, value.join('-'));
    else if (key === 'v') params.set(key, value.map((x) => Number(x.toPrecision(6))).join(','));
    else params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `#${text}` : '';
}

/** Write the fragment of `state()` without a new history entry or a reload, at most every `wait` ms. */
export function hashWriter(state, wait = 250) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const hash = formatHash(state()) || '#';
      if (hash !== (location.hash || '#')) location.replace(hash);
    }, wait);
  };
}
