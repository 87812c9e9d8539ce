// Writes tests/golden/hf-pytorch.json: the logits of the test's two small HF-layout models
// (tests/helpers/hf-models.ts: a Llama with GQA and a tied head, a Qwen2 with biases) on fixed ids, from
// scripts/hf_decoder.py, PyTorch in float64. Run: npx tsx scripts/hf-golden.ts (needs /usr/bin/python3 with
// torch: apt install python3-torch). Only regenerating the file needs Python; the test reads the file.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { GOLDEN_IDS, TINY_MODELS, tinyModel, writeModelDir } from '../tests/helpers/hf-models.js';

const out: Record<string, { ids: number[]; logits: number[][] }> = {};
for (const [name, cfg] of Object.entries(TINY_MODELS)) {
  const dir = mkdtempSync(join(tmpdir(), `hf-golden-${name}-`));
  try {
    const m = tinyModel(cfg, { dtype: 'float64' });
    await writeModelDir(dir, m);
    m.dispose();
    const r = spawnSync('/usr/bin/python3', ['scripts/hf_decoder.py', dir, GOLDEN_IDS.join(',')], {
      encoding: 'utf8',
      maxBuffer: 1 << 28,
    });
    if (r.status !== 0) throw new Error(`scripts/hf_decoder.py failed for ${name}: ${r.stderr || r.error}`);
    out[name] = { ids: GOLDEN_IDS, logits: (JSON.parse(r.stdout) as { logits: number[][] }).logits };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
writeFileAtomic.sync('tests/golden/hf-pytorch.json', JSON.stringify(out) + '\n');
console.error('wrote tests/golden/hf-pytorch.json');
