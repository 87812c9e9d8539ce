// ESLint: the recommended JavaScript and TypeScript rules on every source, and lines of at most 120
// characters (the rest of formatting is prettier's).
import js from '@eslint/js';
import stylistic from '@stylistic/eslint-plugin';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'results/', 'bench-results/', 'runs/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    plugins: { '@stylistic': stylistic },
    rules: {
      // prettier wraps code at 120 but not strings or comments: this catches those.
      '@stylistic/max-len': ['error', { code: 120, ignoreUrls: true }],
      // `_` names a value a destructuring leaves out on purpose.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
);
