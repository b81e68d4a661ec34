// Building the DOM from data: elements and textContent only, never HTML strings.

/** The element with this id (null when absent). */
export const $ = (id) => document.getElementById(id);

/** A new `<tag class="cls">text</tag>`; `cls` and `text` may be omitted (text goes in as text). */
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

/** The page's JSON configuration, from `{{ config|json_script:"weiyu-config" }}`. */
export function pageConfig() {
  return JSON.parse(document.getElementById('weiyu-config').textContent);
}
