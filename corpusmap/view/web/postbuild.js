// After esbuild: (1) replace links to package pages inside dependencies' error messages by the package name, so
// that the committed bundle names no package-registry site; (2) write the licences of every bundled package
// (the production dependencies in package-lock.json) beside the bundle.
const fs = require('node:fs');
const path = require('node:path');

const bundle = '../static/corpusmap-view.js';
const text = fs.readFileSync(bundle, 'utf8');
fs.writeFileSync(bundle, text.replace(/https?:\/\/www\.[a-z]+\.com\/package\/([\w.-]+)/g, 'the $1 package'));

const lock = JSON.parse(fs.readFileSync('package-lock.json', 'utf8'));
const parts = ['Licences of the packages bundled in corpusmap-view.js (built from corpusmap/view/web).\n'];
for (const [where, info] of Object.entries(lock.packages)) {
  if (!where || info.dev) continue;
  const dir = path.join(__dirname, where);
  const file = fs.readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
  const body = file ? fs.readFileSync(path.join(dir, file), 'utf8').trim() : `(${info.license}; no licence file)`;
  parts.push(`\n==== ${where.replace(/^.*node_modules\//, '')} ${info.version} (${info.license}) ====\n\n${body}\n`);
}
fs.writeFileSync('../static/corpusmap-view.LICENSES.txt', parts.join(''));
