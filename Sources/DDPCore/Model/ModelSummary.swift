/// A Keras-like summary table: one row per layer (a dense layer with an inline activation shows
/// as two rows with the same index) with output shape and params, then
/// total / trainable / non-trainable counts and bytes (float32).
public struct ModelSummary {
    public let text: String

    /// `batch`: the config's training batch, for the memory line (none without); each rank
    /// holds its share of a global batch.
    public init(network: Network, batch: Int? = nil) {
        var rows: [(String, String, Int)] = []
        let shapes = (try? network.config.shapes()) ?? []
        for layer in network.layers {
            let parameters = layer.parameterSpecs.reduce(0) { $0 + $1.shape.reduce(1, *) }
            let buffers = layer.bufferSpecs.reduce(0) { $0 + $1.shape.reduce(1, *) }
            let name = "\(layer.configIndex): \(layer.displayName)"
            let shape = layer.configIndex < shapes.count ? shapes[layer.configIndex].description : "(None, \(layer.outputWidth))"
            rows.append((name, shape, parameters + buffers))
        }
        // As Keras: frozen layers' parameters and BatchNorm's running statistics are non-trainable.
        let trainable = network.trainableCount
        let nonTrainable = network.tensors.filter { !($0.storage == .parameter && $0.trainable) }.reduce(0) { $0 + $1.count }
        let width = max(32, (rows.map(\.0.count).max() ?? 0) + 2)
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
        var lines: [String] = []
        let rule = String(repeating: "━", count: width + 40)
        lines.append("Model: \"sequential\" (inputs: \(network.inputWidth))")
        lines.append("Input shape: \(network.config.inputShape)")
        lines.append(rule)
        lines.append(pad("Layer (index: type)", width) + pad("Output Shape", 24) + "Param #")
        lines.append(rule)
        for row in rows { lines.append(pad(row.0, width) + pad(row.1, 24) + "\(row.2)") }
        lines.append(rule)
        func bytes(_ count: Int) -> String {
            let b = Double(count * 4)
            return b < 1024 ? "\(count * 4) B" : b < 1_048_576 ? String(format: "%.2f KB", b / 1024) : String(format: "%.2f MB", b / 1_048_576)
        }
        lines.append(" Total params: \(trainable + nonTrainable) (\(bytes(trainable + nonTrainable)))")
        lines.append(" Trainable params: \(trainable) (\(bytes(trainable)))")
        lines.append(" Non-trainable params: \(nonTrainable) (\(bytes(nonTrainable)))")
        if let batch {
            // What the memory check counts: the activations (input and every layer's output)
            // and the layers' workspace (a convolution's unfolded patches), per training batch.
            let (activations, workspace) = network.config.floatsPerSampleByKind()
            lines.append(" Activations at \(batch) samples: \(bytes(activations * batch))"
                         + (workspace > 0 ? "; workspace (conv patches, pooling indices): \(bytes(workspace * batch))" : "")
                         + " (a rank holds its share of the global batch)")
        }
        text = lines.joined(separator: "\n")
    }
}
