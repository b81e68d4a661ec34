// The side panel as a drawer on narrow screens (below 1100 px, see inbox.css): "Details" in the
// conversation header opens it over the conversation; its back button, the backdrop or Escape
// close it, and so does another conversation being selected or the selected one leaving.
// On wide screens the panel stands beside the conversation and none of this is visible.
import { $ } from '../weiyu/dom.js';
import { on, state } from './store.js';

const app = $('app');
const openBtn = $('details-btn');
const closeBtn = $('details-close');

/** Whether the side panel is open as a drawer. */
export function detailsOpen() {
  return app.classList.contains('show-details');
}

/** Open the side panel's drawer and move the focus into it. */
export function openDetails() {
  app.classList.add('show-details');
  openBtn.setAttribute('aria-expanded', 'true');
  closeBtn.focus();
}

/** Close the drawer; `refocus`: give the focus back to the "Details" button. */
export function closeDetails(refocus = false) {
  if (!detailsOpen()) return;
  app.classList.remove('show-details');
  openBtn.setAttribute('aria-expanded', 'false');
  if (refocus) openBtn.focus();
}

openBtn.addEventListener('click', () => (detailsOpen() ? closeDetails(true) : openDetails()));
closeBtn.addEventListener('click', () => closeDetails(true));
$('drawer-backdrop').addEventListener('click', () => closeDetails(true));
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && detailsOpen() && !document.querySelector('dialog[open]')) closeDetails(true);
});
on('switch', () => closeDetails());
on('side', () => {
  if (state.selected == null) closeDetails();
});
