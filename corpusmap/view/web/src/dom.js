// DOM helpers. Every text from the data goes in as a text node (never as HTML), so markup in an abstract or a
// title shows literally and never runs.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'style') Object.assign(node.style, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export const fmt = new Intl.NumberFormat('en-US');

export function plural(n, one, many = `${one}s`) {
  return `${fmt.format(n)} ${n === 1 ? one : many}`;
}

/** A paper's title as the page shows it: "(no title)" for none, an empty one or one of blank space only. */
export function shownTitle(title) {
  return hasTitle(title) ? title : '(no title)';
}

/** Whether a title is worth showing (not missing, not blank space only). */
export function hasTitle(title) {
  return typeof title === 'string' && title.trim() !== '';
}
