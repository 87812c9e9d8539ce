// A worker process of `igpo compare --jobs N`: runs the tasks its parent sends (compare.ts's executeTask),
// one at a time, and answers each with its log line or its error. Exits when the parent disconnects.

import type * as E from '../engine/index.js';
import { executeTask, type Task } from './compare.js';
import type { StudySpec } from './results.js';

interface Message {
  id: number;
  study: StudySpec;
  dir: string;
  task: Task;
  device: E.Device;
  code: string;
}

if (!process.send) throw new Error('compare-worker: run me through igpo compare --jobs N, not directly');
let busy = Promise.resolve();
process.on('message', (m: Message) => {
  busy = busy.then(async () => {
    try {
      process.send!({ id: m.id, ok: true, line: await executeTask(m.study, m.dir, m.task, m.device, m.code) });
    } catch (e) {
      process.send!({ id: m.id, ok: false, error: (e as Error).message });
    }
  });
});
process.on('disconnect', () => void busy.then(() => process.exit(0)));
