# Reading a safetensors file into torch tensors, for the PyTorch sides (bench/peers/torch_decoder.py,
# scripts/hf_decoder.py): an 8-byte little-endian header length, a JSON header, the data. F32 and F64 only,
# the dtypes those scripts are given. Not a writer, and not the project's validated reader (model/safetensors.ts).
import json
import struct

import torch

DTYPES = {'F32': torch.float32, 'F64': torch.float64}


def load_safetensors(path):
    """The tensors of a safetensors file by name, each in its file dtype."""
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n])
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        a, b = e['data_offsets']
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=DTYPES[e['dtype']]).reshape(e['shape'])
    return out
