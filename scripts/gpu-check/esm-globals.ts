// Injected into the GPU check's bundle (scripts/gpu-check.sh): the CommonJS globals that bundled packages
// read (write-file-atomic hashes __filename into its temporary names), which an ES module lacks.

import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const filename = fileURLToPath(import.meta.url);
export { filename as __filename };
export const __dirname = dirname(filename);
