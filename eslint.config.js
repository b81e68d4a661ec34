// ESLint (flat config) for the browser code under static/: plain ES modules, no build step.
// Run with scripts/lint_js.sh (CI calls it from .ci/run).
import js from '@eslint/js';
import globals from 'globals';

const rules = {
  'no-unused-vars': ['error', { args: 'after-used', caughtErrors: 'none' }],
  'no-undef': 'error',
  'prefer-const': 'error',
  eqeqeq: ['error', 'always', { null: 'ignore' }],
};

export default [
  { ignores: ['static/vendor/**', 'staticfiles/**', 'node_modules/**'] },
  js.configs.recommended,
  {
    files: ['static/**/*.js'],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      // gettext/interpolate (Django's /jsi18n/ catalog) are reached through static/weiyu/i18n.js
      globals: globals.browser,
    },
    rules,
  },
  {
    // the loader pasted into customers' pages is a classic script, not a module
    files: ['static/widget/widget.js'],
    languageOptions: { ecmaVersion: 2017, sourceType: 'script' },
  },
  {
    // the inbox's service worker is a classic worker script
    files: ['static/inbox/push_sw.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'script', globals: globals.serviceworker },
  },
  {
    files: ['eslint.config.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: globals.node },
    rules,
  },
];
