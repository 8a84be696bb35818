/// The network's tensors under torch nn.Sequential state_dict names, so that
/// `nn.Sequential(<same layers>).load_state_dict(safetensors.torch.load_file(path))` just works:
/// `{i}.weight` (dense: [out, in]), `{i}.bias`, `{i}.running_mean`, `{i}.running_var`,
/// `{i}.num_batches_tracked` (int64, 0-dim), where i is the layer's index in `model.layers`;
/// conv kernels `[out, in, kh, kw]` (nn.Conv2d), each tensor in its `ExportLayout`.
extension Network {
    public func exportTensors() -> [StoredTensor] {
        var result: [StoredTensor] = []
        var counter = 0
        func appendCounters(through position: Int) {
            while counter < layout.counters.count && layout.counterPositions[counter] <= position {
                result.append(StoredTensor(name: layout.counters[counter], shape: [], int64s: [counters[counter]]))
                counter += 1
            }
        }
        for (position, slot) in tensors.enumerated() {
            appendCounters(through: position)
            let base = slot.storage == .parameter ? parameters.baseAddress! : state.baseAddress!
            result.append(slot.exportLayout.export(UnsafeBufferPointer(start: base + slot.offset, count: slot.count), name: slot.name))
        }
        appendCounters(through: tensors.count)
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
            try slot.exportLayout.load(tensor, into: UnsafeMutableBufferPointer(start: base + slot.offset, count: slot.count), file: file)
        }
        for (index, name) in layout.counters.enumerated() {
            if let count = stored[name]?.int64s()?.first { counters[index] = count }
        }
    }

    public func saveWeights(to path: String, metadata: [String: String] = [:]) throws {
        try SafeTensors.write(exportTensors(), metadata: metadata, to: path)
    }

    public func loadWeights(from path: String) throws {
        try importTensors(try SafeTensors.read(path: path).tensors, file: path)
    }
}
