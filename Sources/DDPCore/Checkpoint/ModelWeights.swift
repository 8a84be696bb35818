/// The network's tensors under torch nn.Sequential state_dict names, so that
/// `nn.Sequential(<same layers>).load_state_dict(safetensors.torch.load_file(path))` just works:
/// `{i}.weight` (dense: [out, in]), `{i}.bias`, `{i}.running_mean`, `{i}.running_var`,
/// `{i}.num_batches_tracked` (int64, 0-dim), where i is the layer's index in `model.layers`.
extension Network {
    public func exportTensors() -> [StoredTensor] {
        var result: [StoredTensor] = []
        // Slots follow layer order, so the n-th running_var belongs to the n-th BatchNorm;
        // its counter follows it, as in torch's state_dict.
        var norms = batchNorms.makeIterator()
        for slot in tensors {
            let base = slot.storage == .parameter ? parameters.baseAddress! : state.baseAddress!
            result.append(StoredTensor(name: slot.name, shape: slot.shape,
                                       floats: UnsafeBufferPointer(start: base + slot.offset, count: slot.count)))
            if slot.name.hasSuffix(".running_var"), let norm = norms.next() {
                result.append(StoredTensor(name: "\(norm.configIndex).num_batches_tracked", shape: [], int64s: [norm.batchesTracked]))
            }
        }
        return result
    }

    /// Loads weights saved by `exportTensors` or by torch. Every tensor of the model must be
    /// present with its exact shape; an extra tensor is an error too (as load_state_dict strict).
    public func importTensors(_ stored: [String: StoredTensor], file: String) throws {
        try layout.checkImport(stored, file: file)
        // Everything checked: copy, so a bad file never leaves the model half loaded.
        for slot in tensors {
            let tensor = stored[slot.name]!
            let base = slot.storage == .parameter ? parameters.baseAddress! : state.baseAddress!
            try tensor.copyFloats(into: UnsafeMutableBufferPointer(start: base + slot.offset, count: slot.count), file: file)
        }
        for norm in batchNorms {
            if let count = stored["\(norm.configIndex).num_batches_tracked"]?.int64s()?.first {
                norm.batchesTracked = count
            }
        }
    }

    public func saveWeights(to path: String, metadata: [String: String] = [:]) throws {
        try SafeTensors.write(exportTensors(), metadata: metadata, to: path)
    }

    public func loadWeights(from path: String) throws {
        try importTensors(try SafeTensors.read(path: path).tensors, file: path)
    }
}
