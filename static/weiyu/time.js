// Times as the user reads them, in the browser's time zone and locale.
import { gettext, interpolate } from './i18n.js';

function parse(iso) {
  const d = iso ? new Date(iso) : null;
  return !d || isNaN(d) ? null : d;
}

/** Local "HH:MM" for an ISO timestamp ('' if unparsable). */
export function hhmm(iso) {
  const d = parse(iso);
  if (!d) return '';
  return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
}

/** Full local timestamp, for title attributes ('' if unparsable). */
export function fullTime(iso) {
  const d = parse(iso);
  return d ? d.toLocaleString() : '';
}

/** "HH:MM" today, else the short date ("Mar 5"), for lists ('' if unparsable). */
export function shortTime(iso) {
  const d = parse(iso);
  if (!d) return '';
  if (d.toDateString() === new Date().toDateString()) return hhmm(iso);
  return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
}

/** Short date and time ("Mar 5, 14:30") ('' if unparsable). */
export function dayTime(iso) {
  const d = parse(iso);
  return d ? d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' }) : '';
}

/** "in 25 min", "3 h ago": how far `iso` is from now. */
export function relative(iso) {
  const ms = Date.parse(iso) - Date.now();
  const minutes = Math.round(Math.abs(ms) / 60000);
  const text = minutes < 60
    ? interpolate(gettext('%(n)s min'), { n: minutes }, true)
    : minutes < 48 * 60
      ? interpolate(gettext('%(n)s h'), { n: Math.round(minutes / 60) }, true)
      : interpolate(gettext('%(n)s d'), { n: Math.round(minutes / 1440) }, true);
  return ms >= 0
    ? interpolate(gettext('in %(t)s'), { t: text }, true)
    : interpolate(gettext('%(t)s ago'), { t: text }, true);
}

/** A duration in ms as "m:ss". */
export function formatDuration(ms) {
  const s = Math.round((ms || 0) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}
