// Links for identifiers: PubMed for PMIDs (PMID:digits, and bare digits when the corpus says its ids are
// PMIDs), PMC for PMCIDs, doi.org for DOIs, arxiv.org for arXiv ids.

const DOI = /^(?:doi:\s*|https?:\/\/(?:dx\.)?doi\.org\/)?(10\.\d{4,9}\/\S+)$/i;
const ARXIV_NEW = /^(?:arxiv:)?(\d{4}\.\d{4,5}(?:v\d+)?)$/i;
const ARXIV_OLD = /^(?:arxiv:)?([a-z][a-z-]*(?:\.[A-Z]{2})?\/\d{7}(?:v\d+)?)$/i;

const encodePath = (s) => s.split('/').map(encodeURIComponent).join('/');

/** {href, kind} for an id, or null when it matches none of the known schemes. ``pmids``: bare numbers are
 * PMIDs (else they may be row numbers or another scheme's, and get no link). */
export function idLink(id, pmids = false) {
  if (id === null || id === undefined) return null;
  const s = String(id).trim();
  let m = (pmids ? /^(?:pmid:?\s*)?(\d{1,9})$/i : /^pmid:?\s*(\d{1,9})$/i).exec(s);
  if (m) return { href: `https://pubmed.ncbi.nlm.nih.gov/${m[1]}/`, kind: 'PubMed' };
  m = /^(?:pmcid:?\s*)?(PMC\d{1,9})$/i.exec(s);
  if (m) return { href: `https://pmc.ncbi.nlm.nih.gov/articles/${m[1].toUpperCase()}/`, kind: 'PMC' };
  m = DOI.exec(s);
  if (m) return { href: `https://doi.org/${encodePath(m[1])}`, kind: 'DOI' };
  m = ARXIV_NEW.exec(s) || ARXIV_OLD.exec(s);
  if (m) return { href: `https://arxiv.org/abs/${encodePath(m[1])}`, kind: 'arXiv' };
  return null;
}
