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

// ---- wall-clock times in a named time zone (scheduled replies at the customer's local time) ----
function zoneParts(date, zone) {
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
  return Object.fromEntries(fmt.formatToParts(date).map((p) => [p.type, p.value]));
}

function zoneOffsetMs(date, zone) {
  const p = zoneParts(date, zone);
  const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour % 24, +p.minute, +p.second);
  return asUtc - Math.floor(date.getTime() / 1000) * 1000;
}

/** The browser's IANA time zone ("Europe/Berlin"; '' when unknown). */
export function browserZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || '';
  } catch (e) {
    return '';
  }
}

/** Whether `zone` is an IANA time zone this browser knows. */
export function knownZone(zone) {
  if (!zone) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone }).format(0);
    return true;
  } catch (e) {
    return false;
  }
}

/** The instant at which the wall clock in `zone` reads `local` ("YYYY-MM-DDTHH:MM[:SS]", as a
 *  datetime-local input gives it); null if unparsable. */
export function zonedToDate(local, zone) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(local || '');
  if (!m) return null;
  const guess = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  const first = guess - zoneOffsetMs(new Date(guess), zone);
  const second = guess - zoneOffsetMs(new Date(first), zone); // across a DST change
  return new Date(second);
}

/** `date` as the wall clock in `zone` reads it: "YYYY-MM-DDTHH:MM:SS" (for datetime-local). */
export function dateToZoned(date, zone) {
  const p = zoneParts(date, zone);
  return `${p.year}-${p.month}-${p.day}T${String(+p.hour % 24).padStart(2, '0')}:${p.minute}:${p.second}`;
}

/** "Mar 5, 14:30" as read in `zone`. */
export function dayTimeIn(iso, zone) {
  const d = parse(iso);
  if (!d) return '';
  const opts = { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' };
  if (zone) opts.timeZone = zone;
  return d.toLocaleString(undefined, opts);
}
