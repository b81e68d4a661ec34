// Translation helpers for every module. Django's JavaScript catalog (/jsi18n/, a classic script
// the templates load before the modules) defines gettext and interpolate on window; without it
// the text stays untranslated and interpolation still works.

function interpolateFallback(fmt, obj, named) {
  return named
    ? fmt.replace(/%\((\w+)\)s/g, (_, k) => String(obj[k]))
    : fmt.replace(/%s/g, () => String(obj.shift()));
}

/** The translation of `text` in the page's language. */
export const gettext = typeof window.gettext === 'function' ? window.gettext : (text) => text;

/** `interpolate('%(n)s min', {n: 3}, true)`, as Django's catalog defines it. */
export const interpolate =
  typeof window.interpolate === 'function' ? window.interpolate : interpolateFallback;
