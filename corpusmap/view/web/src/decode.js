// Typed arrays from base64 (the Python writer stores every numeric column so: compact and fast to decode).

export function bytes(b64) {
  if (typeof Uint8Array.fromBase64 === 'function') return Uint8Array.fromBase64(b64);
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

const TYPES = {
  u8: Uint8Array,
  u16: Uint16Array,
  u32: Uint32Array,
  i32: Int32Array,
  f32: Float32Array,
};

/** Decode {dtype, b64} (or null) into a typed array. */
export function typed(column) {
  if (!column) return null;
  const Type = TYPES[column.dtype];
  if (!Type) throw new Error(`unknown dtype ${column.dtype}`);
  const raw = bytes(column.b64);
  return new Type(raw.buffer, raw.byteOffset, raw.byteLength / Type.BYTES_PER_ELEMENT);
}
