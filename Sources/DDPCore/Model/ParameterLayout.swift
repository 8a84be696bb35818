/// Where one named tensor lives in the network's flat buffers.
public struct TensorSlot: Sendable {
    public enum Storage: Sendable { case parameter, state }
    /// torch nn.Sequential state_dict name, e.g. "0.weight", "1.running_var".
    public var name: String
    /// The shape it is exported in (torch's: a dense kernel is [out, in], a conv kernel
    /// [out, in, kh, kw]).
    public var shape: [Int]
    /// How the stored order maps to the exported one.
    public var exportLayout: ExportLayout
    public var storage: Storage
    public var offset: Int
    public var count: Int
    /// Role for parameters (decides default weight decay); nil for state.
    public var role: ParameterRole?
    public var regularizer: Penalty?
    /// False for the parameters of a frozen layer, which sit after every trainable one.
    public var trainable = true
}

/// The one walk over a network's layer specs that every offset comes from: each parameter and
/// state tensor's name, shape and place in the flat buffers. Trainable parameters come first,
/// frozen ones after them, so what a step computes gradients for, synchronizes and updates is
/// the prefix `0..<trainableCount` (as torch's DDP skips parameters without requires_grad).
/// State (BatchNorm's running statistics) lives in a buffer of its own.
///
/// The layout knows nothing of ranks: a gradient sync that splits or pads the buffers builds
/// its own layout from this one (`SyncBuffers`).
public struct ParameterLayout: Sendable {
    /// Every tensor, in layer order: each layer's parameters, then its state.
    public let tensors: [TensorSlot]
    /// Every parameter, trainable and frozen.
    public let parameterCount: Int
    /// The trainable parameters: the prefix of the parameter buffer that gradients cover.
    public let trainableCount: Int
    /// Floats of state.
    public let stateCount: Int
    /// Each layer's first parameter offset, first state offset and first counter, in layer order.
    let layerStarts: [(parameter: Int, state: Int, counter: Int)]
    /// The integer state a checkpoint carries beside the tensors (each layer's `counterNames`
    /// under torch's names, "{i}.num_batches_tracked"), in the order of the network's counter
    /// buffer.
    public let counters: [String]
    /// For each counter, how many tensors come before it in torch's state_dict order (a layer's
    /// counters follow its tensors).
    let counterPositions: [Int]

    /// The layout of the network `config` describes, without the network: what a weights file
    /// must hold, known before any memory is allocated.
    public init(config: ModelConfig) throws {
        try self.init(layers: try Network.layers(of: config).layers)
    }

    init(layers: [Layer]) throws {
        counters = layers.flatMap { layer in layer.counterNames.map { "\(layer.configIndex).\($0)" } }
        var counterPositions: [Int] = []
        let trainableCount = layers.filter(\.trainable).reduce(0) { total, layer in
            layer.parameterSpecs.reduce(total) { $0 + $1.shape.reduce(1, *) }
        }
        var slots: [TensorSlot] = []
        var starts: [(parameter: Int, state: Int, counter: Int)] = []
        var trainableOffset = 0, frozenOffset = trainableCount, stateOffset = 0, counterOffset = 0
        for layer in layers {
            let start = layer.trainable ? trainableOffset : frozenOffset
            starts.append((start, stateOffset, counterOffset))
            counterOffset += layer.counterNames.count
            var offset = start
            for spec in layer.parameterSpecs {
                let count = spec.shape.reduce(1, *)
                let export = spec.exportLayout ?? .identity(spec.shape)
                slots.append(TensorSlot(name: "\(layer.configIndex).\(spec.name)", shape: export.fileShape, exportLayout: export,
                                        storage: .parameter, offset: offset, count: count, role: spec.role,
                                        regularizer: layer.trainable ? spec.regularizer.flatMap { $0.isZero ? nil : $0 } : nil,
                                        trainable: layer.trainable))
                offset += count
            }
            if layer.trainable { trainableOffset = offset } else { frozenOffset = offset }
            for spec in layer.bufferSpecs {
                let count = spec.shape.reduce(1, *)
                let export = spec.exportLayout ?? .identity(spec.shape)
                slots.append(TensorSlot(name: "\(layer.configIndex).\(spec.name)", shape: export.fileShape, exportLayout: export, storage: .state,
                                        offset: stateOffset, count: count, role: nil, regularizer: nil))
                stateOffset += count
            }
            counterPositions += Array(repeating: slots.count, count: layer.counterNames.count)
        }
        if trainableCount == 0 && frozenOffset > 0 {
            throw DDPError(.config, "model.layers: every layer with parameters has trainable: false, so there is nothing to train")
        }
        tensors = slots
        self.counterPositions = counterPositions
        self.trainableCount = trainableCount
        parameterCount = frozenOffset
        stateCount = stateOffset
        layerStarts = starts
    }

    /// Checks that `stored` holds every tensor of the layout with its exact shape as float32,
    /// and nothing else (torch's load_state_dict, strict); a counter may be missing. `file`
    /// names the file in the error.
    public func checkImport(_ stored: [String: StoredTensor], file: String) throws {
        var expected = Set(tensors.map(\.name))
        expected.formUnion(counters)
        let extra = Set(stored.keys).subtracting(expected).sorted()
        let missing = expected.subtracting(stored.keys).subtracting(counters).sorted()
        if !missing.isEmpty {
            throw DDPError(.weights, "\(file) is missing \(missing.count == 1 ? "tensor" : "tensors") \(missing.joined(separator: ", ")) that the model needs")
        }
        if !extra.isEmpty {
            throw DDPError(.weights, "\(file) has \(extra.count == 1 ? "tensor" : "tensors") \(extra.joined(separator: ", ")) that the model does not have (model tensors: \(tensors.map(\.name).joined(separator: ", ")))")
        }
        for slot in tensors {
            let tensor = stored[slot.name]!
            guard tensor.shape == slot.shape else {
                throw DDPError(.weights, "\(file): tensor \(slot.name) has shape \(tensor.shape) but the model expects \(slot.shape)")
            }
            guard tensor.dtype == .float32 else {
                throw DDPError(.weights, "\(file): tensor \(slot.name) is \(tensor.dtype.rawValue), expected F32")
            }
        }
        for name in counters {
            guard let counter = stored[name] else { continue }
            guard let values = counter.int64s(), values.count == 1 else {
                throw DDPError(.weights, "\(file): tensor \(name) must be one int64 (I64), got \(counter.dtype.rawValue) \(counter.shape)")
            }
            // A count of batches: training adds one per step, so it must leave room to count.
            guard values[0] >= 0 && values[0] < 1 << 62 else {
                throw DDPError(.weights, "\(file): tensor \(name) is \(values[0]); a count of batches is at least 0 and below 2^62")
            }
        }
    }

    /// The parameter tensors of trainable layers.
    public var trainableTensors: some Sequence<TensorSlot> {
        tensors.lazy.filter { $0.storage == .parameter && $0.trainable }
    }
}

/// Where a network's parameters and gradients live. The network asks for it once, with its
/// layout: a network alone owns plain memory (`ParameterMemory.owned`); a gradient sync lays
/// the memory out for its collectives (padding, a reduction tail, a node-shared window) and
/// hands the network views into it.
public struct ParameterMemory {
    /// At least `layout.parameterCount` floats, zeroed.
    public let parameters: UnsafeMutablePointer<Float>
    /// At least `layout.trainableCount` floats, zeroed.
    public let gradients: UnsafeMutablePointer<Float>
    /// Keeps the memory alive as long as the network that uses it.
    let owner: AnyObject

    public init(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>, owner: AnyObject) {
        self.parameters = parameters
        self.gradients = gradients
        self.owner = owner
    }

    /// Memory of the network's own: the parameters in a huge-page region (the update streams
    /// through them every step, see `HugePageFloats`), the gradients beside them.
    public static func owned(_ layout: ParameterLayout) -> ParameterMemory {
        let memory = HugePageFloats(counts: [layout.parameterCount, layout.trainableCount])
        return ParameterMemory(parameters: memory.parts[0].baseAddress!, gradients: memory.parts[1].baseAddress!, owner: memory)
    }
}
