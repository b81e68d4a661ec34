// The back office's landing page: the search box filters the grouped pages as one types.
const input = document.getElementById('bo-search');
if (input) {
  const groups = [...document.querySelectorAll('.bo-group')];
  const empty = document.getElementById('bo-empty');
  input.addEventListener('input', () => {
    const words = input.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const group of groups) {
      let any = false;
      for (const entry of group.querySelectorAll('.bo-entry')) {
        const hit = words.every((w) => entry.dataset.name.includes(w));
        entry.hidden = !hit;
        any = any || hit;
        shown += hit ? 1 : 0;
      }
      group.hidden = !any;
    }
    empty.hidden = shown > 0;
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      const first = document.querySelector('.bo-entry:not([hidden]) a');
      if (first) first.click();
    }
  });
}
