// The platform admin's "Add tenant" form: while the company is being created (a second or two),
// the submit button says so and cannot be pressed twice.
document.addEventListener('submit', (e) => {
  const button = e.target.querySelector('input[type=submit][data-busy]');
  if (!button) return;
  button.value = button.dataset.busy;
  button.disabled = true;
});
