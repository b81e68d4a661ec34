// The back office's "Copy" buttons (the widget's embed snippet): copies the text of the element
// named by data-copy, and says so on the button for two seconds.
function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  // plain http (a LAN address): the clipboard API is missing, a hidden textarea still works
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.append(area);
  area.select();
  const ok = document.execCommand('copy');
  area.remove();
  return ok ? Promise.resolve() : Promise.reject(new Error('copy refused'));
}

document.addEventListener('click', (e) => {
  const button = e.target.closest('button[data-copy]');
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const label = button.textContent;
  copyText(source.textContent).then(() => {
    button.textContent = button.dataset.done || label;
    setTimeout(() => {
      button.textContent = label;
    }, 2000);
  }, () => {});
});
