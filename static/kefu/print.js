// The printable transcript's button: the browser's print dialog (which also saves a PDF).
document.getElementById('print-btn').addEventListener('click', () => window.print());
