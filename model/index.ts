// The model's public surface (`igpo-ts/model`): the decoder, its tokenizer, batched KV-cache sampling,
// safetensors checkpoints and supervised training. Import from here.

export * from './gpt.js';
export * from './lm.js';
export * from './kvcache.js';
export * from './tokenizer.js';
export * from './sample.js';
export * from './safetensors.js';
export * from './checkpoint.js';
export * from './train.js';
export * from './hf/config.js';
export * from './hf/decoder.js';
export * from './hf/weights.js';
export * from './hf/tokenizer.js';
