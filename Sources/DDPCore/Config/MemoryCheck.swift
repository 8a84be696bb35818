#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Sizes checked against the machine's memory before anything is allocated: an allocation that
/// cannot succeed traps in Swift ("failed to allocate"), which the user would read as a crash.
/// The estimates are lower bounds, so a model that passes may still be too large, but one that
/// fails can never fit.
enum MemoryCheck {
    /// Physical memory (what a single process could at most get), in bytes.
    static let physicalBytes: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, size > 0 else { return Int.max }
        return pages.multipliedReportingOverflow(by: size).overflow ? Int.max : pages * size
    }()

    /// "48000000000 bytes (44.7 GiB)".
    static func describe(_ bytes: Int) -> String {
        "\(bytes) bytes (" + String(format: "%.1f GiB", Double(bytes) / 1_073_741_824) + ")"
    }

    /// The floats a model needs at the least: its parameters and their gradients, and one output
    /// buffer per layer (and any layer's workspace, as a convolution's unfolded patches) plus
    /// two gradient scratch buffers of the widest layer, for `rows` rows
    /// (the network reserves max(batch, the evaluator's 1024-row chunk)). The error names the key
    /// that makes it too large: a dense layer's units, model.inputs or the batch size.
    /// `gradientCopies`: further buffers of the parameters' size (the deterministic mode's
    /// per-shard gradients).
    static func checkModel(_ model: ModelConfig, batch: Int, batchKey: String, gradientCopies: Int = 0) throws {
        let rows = max(batch, Evaluator.chunk(for: model))
        var width = model.inputs, widest = model.inputs
        var parameters = 0, activations = model.inputs
        var culprit = (key: "model.inputs", floats: -1)
        var overflow = false
        func add(_ a: Int, _ b: Int) -> Int {
            let (sum, over) = a.addingReportingOverflow(b)
            overflow = overflow || over
            return over ? Int.max : sum
        }
        func multiply(_ a: Int, _ b: Int) -> Int {
            let (product, over) = a.multipliedReportingOverflow(by: b)
            overflow = overflow || over
            return over ? Int.max : product
        }
        let shapes = try model.shapes()
        var input = model.inputShape
        // The key that set the current width: a layer's parameters grow with its inputs, so a
        // layer wider in than out is made large by whatever made its input wide.
        var widthKey = "model.inputs"
        for (index, layer) in model.layers.enumerated() {
            let output = shapes[index].count
            let weights = layer.spec.parameterCount(input: input)
            activations = add(activations, layer.spec.workspacePerSample(input: input))
            input = shapes[index]
            if let sizeKey = layer.spec.sizeKey {
                let floats = add(multiply(2, weights), multiply(rows, output))
                let ownKey = "model.layers[\(index)].\(sizeKey)"
                if floats > culprit.floats { culprit = (width > output ? widthKey : ownKey, floats) }
                widthKey = ownKey
            }
            parameters = add(parameters, weights)
            width = output
            widest = max(widest, output)
            activations = add(activations, output)
        }
        let activationFloats = multiply(rows, add(activations, multiply(2, widest)))
        let bytes = multiply(4, add(multiply(2 + gradientCopies, parameters), activationFloats))
        guard overflow || bytes > physicalBytes else { return }
        if rows > Evaluator.chunk(for: model) && activationFloats / 2 > parameters { culprit.key = batchKey }
        throw DDPError(.config, "\(culprit.key): the model needs " + (bytes == Int.max ? "more than 2^63 bytes " : "at least \(describe(bytes)) ")
                       + "(\(parameters == Int.max ? "more than 2^63" : String(parameters)) parameters and their gradients"
                       + (gradientCopies > 0 ? " (\(gradientCopies + 1) copies: distributed.virtual_shards)" : "") + ", "
                       + "activations for \(rows) rows); this machine has \(describe(physicalBytes)) of memory")
    }
}
