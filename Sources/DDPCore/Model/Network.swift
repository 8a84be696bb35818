/// A sequential network whose parameters, gradients and BatchNorm state each live in ONE flat
/// buffer, laid out once by its `ParameterLayout`. Layers hold pointers into them, so:
/// - the optimizer is a single loop over `parameters` (or over one range of it);
/// - gradient synchronization is one collective over one buffer (the sync decides where that
///   buffer lives: it hands the network its `ParameterMemory`);
/// - checkpoints, broadcasts and restore_best_weights copy two buffers.
///
/// Frozen layers' parameters (`trainable: false`) sit after all trainable ones, so everything
/// the step synchronizes and updates is the prefix `0..<trainableCount`: frozen tensors have no
/// gradients, no gradient sync, no optimizer state and no penalty. The network knows nothing
/// of ranks.
public final class Network {
    public let inputWidth: Int
    public let outputWidth: Int
    public let layers: [Layer]
    public let config: ModelConfig
    /// Every tensor's name, shape and offset.
    public let layout: ParameterLayout
    public var tensors: [TensorSlot] { layout.tensors }
    public let batchNorms: [BatchNorm]
    /// Every parameter, trainable and frozen.
    public var parameterCount: Int { layout.parameterCount }
    /// The trainable parameters: the prefix of the flat buffer that gradients, gradient sync,
    /// penalties and the optimizer cover.
    public var trainableCount: Int { layout.trainableCount }
    public let parameters: UnsafeMutableBufferPointer<Float>
    /// The trainable parameters' gradients.
    public let gradients: UnsafeMutableBufferPointer<Float>
    /// Keeps `parameters` and `gradients` alive (see `ParameterMemory`).
    private let memory: ParameterMemory
    public let state: UnsafeMutableBufferPointer<Float>
    /// Every layer's integer state (`Layer.counterNames`), named by `layout.counters`.
    public let counters: UnsafeMutableBufferPointer<Int64>
    /// Activity penalty of each expanded layer's output, if any.
    private let activityPenalties: [Penalty?]
    /// How forward and backward walk `layers`: one layer, or a run of them fused into one pass
    /// over the rows (`FusedNormActivation`: BatchNorm → ReLU → Dropout and its shorter forms).
    private enum Step {
        case layer(Int)
        case fused(FusedNormActivation)
    }
    private let steps: [Step]
    /// After backward has run `steps[i]` (and every step after it), the trainable gradients
    /// from `gradientsFinal[i]` to `trainableCount` are final: a layer's parameters sit after
    /// those of the layers before it, and frozen ones after all trainable ones.
    private let gradientsFinal: [Int]
    /// Kernel and bias penalties as (offset, count, penalty), for the per-step loop.
    private let weightPenalties: [(offset: Int, count: Int, penalty: Penalty)]
    /// Constrained tensors as rows (see `WeightConstraint`), for the after-update pass.
    private let constraints: [(offset: Int, rows: Int, rowLength: Int, constraint: WeightConstraint)]

    public private(set) var maxBatch = 0
    /// Network input, (maxBatch, inputWidth); the trainer gathers batches into it.
    public private(set) var input = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    private var outputs: [UnsafeMutableBufferPointer<Float>] = []
    private var gradientScratch: [UnsafeMutableBufferPointer<Float>] = []
    /// Deterministic mode: which layers run once per virtual shard (Dense and Conv2D: their GEMMs'
    /// shapes and their parameter gradients' sums must not depend on how many rows a rank
    /// holds), and each layer's range of the trainable parameters (empty for a frozen one).
    private let runsPerShard: [Bool]
    private let parameterRanges: [Range<Int>]
    /// Deterministic mode: gradient buffers beside `gradients` (trainableCount floats each) for
    /// the per-shard parameter gradients backward folds: log₂(V/N), or V/N − 1 when steps
    /// accumulate several passes.
    private var shardGradients = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)

    /// `memory`: where the parameters and gradients live, given the layout (a gradient sync
    /// lays them out for its collectives); by default the network's own.
    public convenience init(config: ModelConfig, memory: (ParameterLayout) throws -> ParameterMemory = ParameterMemory.owned) throws {
        try self.init(config: config, memory: memory, fusing: true)
    }

    /// `fusing: false` runs every layer on its own (the tests compare it with the fused runs).
    init(config: ModelConfig, memory: (ParameterLayout) throws -> ParameterMemory = ParameterMemory.owned, fusing: Bool) throws {
        self.config = config
        inputWidth = config.inputs
        let (layers, penalties, width) = try Self.layers(of: config)
        self.layers = layers
        activityPenalties = penalties
        var steps: [Step] = []
        var next = 0
        while next < layers.count {
            if fusing, let run = FusedNormActivation.run(in: layers, at: next, activityPenalties: penalties) {
                steps.append(.fused(run))
                next = (run.poolIndex ?? run.last) + 1
            } else {
                steps.append(.layer(next))
                next += 1
            }
        }
        self.steps = steps
        outputWidth = width
        batchNorms = layers.compactMap { $0 as? BatchNorm }

        layout = try ParameterLayout(layers: layers)
        let layerStarts = layout.layerStarts, trainableCount = layout.trainableCount
        var constraints: [(offset: Int, rows: Int, rowLength: Int, constraint: WeightConstraint)] = []
        for (layer, start) in zip(layers, layerStarts) where layer.trainable {
            var offset = start.parameter
            for spec in layer.parameterSpecs {
                let count = spec.shape.reduce(1, *)
                if let constraint = spec.constraint {
                    // Keras axis 0: one row per unit of a (units, inputs) kernel; Keras's axis
                    // [0, 1, 2] for a conv: one row per filter of a stored (out, kh, kw, in)
                    // kernel; a bias is one row.
                    let rows = spec.shape.count >= 2 ? spec.shape[0] : 1
                    constraints.append((offset, rows, count / rows, constraint))
                }
                offset += count
            }
        }
        gradientsFinal = steps.map { step in
            let first: Int
            switch step {
            case .layer(let index): first = index
            case .fused(let run): first = run.first
            }
            return layers.indices.filter { $0 >= first && layers[$0].trainable }.map { layerStarts[$0].parameter }.min() ?? trainableCount
        }
        runsPerShard = layers.map { !($0 is BatchNorm) && !$0.parameterSpecs.isEmpty }
        parameterRanges = zip(layers, layerStarts).map { layer, start in
            let count = layer.parameterSpecs.reduce(0) { $0 + $1.shape.reduce(1, *) }
            return layer.trainable ? start.parameter..<start.parameter + count : start.parameter..<start.parameter
        }
        weightPenalties = layout.tensors.compactMap { slot in slot.regularizer.map { (slot.offset, slot.count, $0) } }
        self.constraints = constraints
        self.memory = try memory(layout)
        parameters = UnsafeMutableBufferPointer(start: self.memory.parameters, count: layout.parameterCount)
        gradients = UnsafeMutableBufferPointer(start: self.memory.gradients, count: layout.trainableCount)
        state = .allocate(capacity: max(layout.stateCount, 1))
        state.initialize(repeating: 0)
        counters = UnsafeMutableBufferPointer(start: .allocate(capacity: max(layout.counters.count, 1)), count: layout.counters.count)
        counters.baseAddress!.initialize(repeating: 0, count: max(layout.counters.count, 1))

        for (layer, start) in zip(layers, layerStarts) {
            layer.bind(parameters: parameters.baseAddress! + start.parameter,
                       gradients: layer.trainable ? gradients.baseAddress! + start.parameter : nil,
                       buffers: state.baseAddress! + start.state)
            layer.bind(counters: counters.baseAddress! + start.counter)
        }
    }

    /// The layers `config` describes (a config entry may expand to several, as a dense layer
    /// with an activation), each one's activity penalty, and the output width.
    static func layers(of config: ModelConfig) throws -> (layers: [Layer], activityPenalties: [Penalty?], outputWidth: Int) {
        guard !config.layers.isEmpty else { throw DDPError(.config, "model.layers is empty: expected at least one layer") }
        let shapes = try config.shapes()
        var layers: [Layer] = []
        var penalties: [Penalty?] = []
        for (index, entry) in config.layers.enumerated() {
            let input = index == 0 ? config.inputShape : shapes[index - 1]
            let built = entry.spec.makeLayers(configIndex: index, input: input, frozen: !entry.trainable)
            layers += built
            penalties += Array(repeating: nil, count: built.count - 1)
            penalties.append(entry.activityRegularizer.flatMap { $0.isZero ? nil : $0 })
        }
        return (layers, penalties, shapes.last!.count)
    }

    deinit {
        state.deallocate()
        counters.deallocate()
        input.deallocate()
        outputs.forEach { $0.deallocate() }
        gradientScratch.forEach { $0.deallocate() }
        shardGradients.deallocate()
    }

    /// Deterministic mode: room for `localShards` per-shard gradients (a power of two), once.
    public func reserveShardGradients(localShards: Int, accumulating: Bool) {
        let buffers = accumulating ? localShards - 1 : localShards.trailingZeroBitCount
        guard shardGradients.count < buffers * trainableCount else { return }
        shardGradients.deallocate()
        shardGradients = .allocate(capacity: buffers * trainableCount)
        shardGradients.initialize(repeating: 0)
    }

    /// Initial weights from the seed (Keras initializers) and fresh BatchNorm state.
    public func initialize(seed: UInt64) {
        // `tensors` lists each layer's parameter specs, then its buffer specs, in layer order.
        var slots = tensors.makeIterator()
        for (layerIndex, layer) in layers.enumerated() {
            for (specIndex, spec) in layer.parameterSpecs.enumerated() {
                let slot = slots.next()!
                let view = UnsafeMutableBufferPointer(rebasing: parameters[slot.offset..<slot.offset + slot.count])
                spec.initializer.fill(view, fanIn: spec.fanIn, fanOut: spec.fanOut, seed: seed,
                                      key: UInt64(layerIndex) << 8 | UInt64(specIndex))
            }
            for spec in layer.bufferSpecs {
                let slot = slots.next()!
                UnsafeMutableBufferPointer(rebasing: state[slot.offset..<slot.offset + slot.count]).update(repeating: spec.initialValue)
            }
        }
        counters.update(repeating: 0)
    }

    /// Allocates activations and workspaces for batches of up to `maxBatch` rows, once.
    public func reserve(maxBatch: Int) {
        guard maxBatch > self.maxBatch else { return }
        self.maxBatch = maxBatch
        input.deallocate()
        input = .allocate(capacity: maxBatch * inputWidth)
        input.initialize(repeating: 0)
        outputs.forEach { $0.deallocate() }
        // Inside a fused run only the last layer's output is written and read, and the run keeps
        // no mask and no x̂: the inner layers' outputs and the Dropout and BatchNorm layers'
        // workspaces stay empty.
        let runs = steps.compactMap { step -> FusedNormActivation? in
            guard case .fused(let run) = step else { return nil }
            return run
        }
        let unwritten = Set(runs.flatMap { Array($0.first..<$0.last) })
        let replaced = Set(runs.flatMap { run in [run.dropout.map(ObjectIdentifier.init), run.norm.map(ObjectIdentifier.init)].compactMap { $0 } })
        outputs = layers.enumerated().map { index, layer in
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: unwritten.contains(index) ? 0 : maxBatch * layer.outputWidth)
            buffer.initialize(repeating: 0)
            return buffer
        }
        let widest = layers.reduce(inputWidth) { max($0, $1.outputWidth) }
        gradientScratch.forEach { $0.deallocate() }
        gradientScratch = (0..<2).map { _ in
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: maxBatch * widest)
            buffer.initialize(repeating: 0)
            return buffer
        }
        for layer in layers where !replaced.contains(ObjectIdentifier(layer)) { layer.reserve(maxBatch: maxBatch) }
        runs.forEach { $0.reserve(maxBatch: maxBatch) }
    }

    /// The output of `layers[index]` in the last `forward` (batch × its outputWidth). Not for a
    /// layer inside a fused run but its last: only the run's last layer writes an output.
    public func output(ofLayer index: Int) -> UnsafePointer<Float> {
        precondition(outputs[index].count > 0 || layers[index].outputWidth == 0,
                     "Network.output(ofLayer: \(index)): the layer runs inside a fused pass and writes no output of its own")
        return UnsafePointer(outputs[index].baseAddress!)
    }

    /// The output (batch, outputWidth) of the last `forward`.
    public var output: UnsafeMutablePointer<Float> { outputs[outputs.count - 1].baseAddress! }

    /// Where the loss writes dL/d(output) before `backward`.
    public var outputGradient: UnsafeMutablePointer<Float> { gradientScratch[0].baseAddress! }

    /// Runs every layer on `input[0..<batch]`. Returns the activity-regularization penalty summed
    /// over the batch (the Keras per-batch value times batch size).
    @discardableResult
    public func forward(batch: Int, context: StepContext) throws -> Double {
        if context.training, let shards = context.shards { return try forward(shards: shards, context: context) }
        var penalty = 0.0
        var current = UnsafePointer(input.baseAddress!)
        for step in steps {
            switch step {
            case .layer(let index):
                let layer = layers[index], output = outputs[index].baseAddress!
                try layer.forward(current, output, batch: batch, context: context)
                if let activity = activityPenalties[index] {
                    penalty += activity.value(of: output, count: batch * layer.outputWidth)
                }
                current = UnsafePointer(output)
            case .fused(let run):
                // The run's inner layers' outputs are not written: only its last one is read.
                let output = outputs[run.last].baseAddress!
                let pooled = run.poolIndex.map { outputs[$0].baseAddress! }
                try run.forward(current, output, pooled: pooled, batch: batch, context: context)
                current = UnsafePointer(pooled ?? output)
            }
        }
        return penalty
    }

    /// Deterministic mode's forward: a layer with parameters other than a BatchNorm (whose
    /// statistics combine the shards' sums itself) runs once per virtual shard on the shard's
    /// rows, so its GEMMs have the same shapes at any np; the other layers are loops over rows
    /// whose results do not depend on the batch, and run once. Each shard's activity penalty
    /// adds to its partial sum (zeroed by `VirtualShards.beginStep`).
    private func forward(shards: VirtualShards, context: StepContext) throws -> Double {
        let batch = shards.rowStarts[shards.local]
        let sampleRows = context.sampleRows
        defer { context.sampleRows = sampleRows }
        var activitySum = 0.0
        var current = UnsafePointer(input.baseAddress!)
        var currentWidth = inputWidth
        for step in steps {
            switch step {
            case .layer(let index):
                let layer = layers[index], output = outputs[index].baseAddress!, width = layer.outputWidth
                let perShard = runsPerShard[index]
                if !perShard { try layer.forward(current, output, batch: batch, context: context) }
                for shard in 0..<shards.local {
                    let rows = shards.rows(shard)
                    if perShard {
                        context.sampleRows = sampleRows + rows.lowerBound
                        context.rowOffset = rows.lowerBound
                        try layer.forward(current + rows.lowerBound * currentWidth, output + rows.lowerBound * width,
                                          batch: rows.count, context: context)
                        context.sampleRows = sampleRows
                        context.rowOffset = 0
                    }
                    if let activity = activityPenalties[index] {
                        let value = activity.value(of: output + rows.lowerBound * width, count: rows.count * width)
                        shards.activityPartials[shard] += value
                        activitySum += value
                    }
                }
                current = UnsafePointer(output)
                currentWidth = width
            case .fused(let run):
                let output = outputs[run.last].baseAddress!
                let pooled = run.poolIndex.map { outputs[$0].baseAddress! }
                try run.forward(current, output, pooled: pooled, batch: batch, context: context)
                current = UnsafePointer(pooled ?? output)
                currentWidth = layers[run.poolIndex ?? run.last].outputWidth
            }
        }
        return activitySum
    }

    /// Deterministic mode's backward through `layers[index]` (a Dense or Conv2D): once per
    /// virtual shard, each shard's parameter gradients into a buffer of their own, folded in
    /// `VirtualShards`' tree into `gradients`. A step of one pass visits the shards in
    /// `visitOrder` and adds each pair as soon as both are done (a binary counter: log₂(V/N)
    /// buffers, each pair added while in cache; one process ran at 0.65 of the default mode's
    /// speed this way and 0.60 folding after the last shard). A step of several passes (`training.accumulate_steps`) keeps every shard's
    /// buffer (shard 0's is `gradients`), written on the first pass and added to on the others,
    /// and folds them after the last.
    private func backward(layer index: Int, input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                          outputGradient dy: UnsafeMutablePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>?,
                          shards: VirtualShards, context: StepContext) throws {
        let layer = layers[index], start = layout.layerStarts[index]
        let inWidth = layer.inputWidth, outWidth = layer.outputWidth
        let sampleRows = context.sampleRows
        defer { context.sampleRows = sampleRows }
        let parameters = self.parameters.baseAddress! + start.parameter, buffers = state.baseAddress! + start.state
        let range = parameterRanges[index]
        let folds = layer.trainable && !range.isEmpty
        let onePass = shards.microBatch == 0 && shards.lastMicroBatch
        context.overwritesGradients = folds && shards.microBatch == 0
        defer {
            context.overwritesGradients = false
            context.rowOffset = 0
        }
        var depth = 0
        for visited in 0..<shards.local {
            let shard = onePass ? shards.visitOrder[visited] : visited
            if folds { layer.bind(parameters: parameters, gradients: shardGradient(onePass ? depth : shard) + range.lowerBound, buffers: buffers) }
            let rows = shards.rows(shard)
            context.sampleRows = sampleRows + rows.lowerBound
            context.rowOffset = rows.lowerBound
            try layer.backward(input: input + rows.lowerBound * inWidth, output: output + rows.lowerBound * outWidth,
                               outputGradient: dy + rows.lowerBound * outWidth, inputGradient: dx.map { $0 + rows.lowerBound * inWidth },
                               batch: rows.count, context: context)
            guard folds && onePass else { continue }
            depth += 1
            var leaves = visited + 1
            while leaves % 2 == 0 {
                Self.add(shardGradient(depth - 1) + range.lowerBound, into: shardGradient(depth - 2) + range.lowerBound, count: range.count)
                depth -= 1
                leaves /= 2
            }
        }
        guard folds else { return }
        layer.bind(parameters: parameters, gradients: gradients.baseAddress! + range.lowerBound, buffers: buffers)
        if !onePass && shards.lastMicroBatch {
            VirtualShards.foldPairs(count: shards.local) { target, source in
                Self.add(shardGradient(source) + range.lowerBound, into: shardGradient(target) + range.lowerBound, count: range.count)
            }
        }
    }

    /// Gradient buffer `shard` (a local shard's, or a depth of the binary counter): `gradients` for 0.
    private func shardGradient(_ shard: Int) -> UnsafeMutablePointer<Float> {
        shard == 0 ? gradients.baseAddress! : shardGradients.baseAddress! + (shard - 1) * trainableCount
    }

    /// target[i] += source[i], eight at a time.
    private static func add(_ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, count: Int) {
        let end = count - count % 8
        var i = 0
        while i < end {
            store8(load8(target + i) + load8(source + i), target + i)
            i += 8
        }
        while i < count { target[i] += source[i]; i += 1 }
    }

    /// Backpropagates `outputGradient` through every layer, adding each parameter's gradient
    /// into `gradients`. Call `zeroGradients()` first. `gradientScale` must be the one the loss
    /// gradient was scaled by: the activity penalties' gradients get the same factor.
    /// `gradientsReady(offset)` after each layer (or fused run): the trainable gradients from
    /// `offset` on are final, so a gradient sync may start reducing them while the rest of
    /// backward runs.
    public func backward(batch: Int, context: StepContext, gradientScale: Float = 1,
                         gradientsReady: (Int) throws -> Void = { _ in }) throws {
        var dy = gradientScratch[0].baseAddress!
        var dx = gradientScratch[1].baseAddress!
        func layerInput(_ index: Int) -> UnsafePointer<Float> {
            UnsafePointer(index == 0 ? input.baseAddress! : outputs[index - 1].baseAddress!)
        }
        for stepIndex in steps.indices.reversed() {
            switch steps[stepIndex] {
            case .layer(let index):
                let layer = layers[index]
                let output = outputs[index].baseAddress!
                if let activity = activityPenalties[index] {
                    let count = batch * layer.outputWidth
                    let l1 = activity.l1 * gradientScale, twoL2 = 2 * activity.l2 * gradientScale
                    for i in 0..<count {
                        let a = output[i]
                        dy[i] += l1 * (a > 0 ? 1 : (a < 0 ? -1 : 0)) + twoL2 * a
                    }
                }
                if context.training, let shards = context.shards, runsPerShard[index] {
                    try backward(layer: index, input: layerInput(index), output: output, outputGradient: dy,
                                 inputGradient: index == 0 ? nil : dx, shards: shards, context: context)
                } else {
                    try layer.backward(input: layerInput(index), output: output, outputGradient: dy,
                                       inputGradient: index == 0 ? nil : dx, batch: batch, context: context)
                }
            case .fused(let run):
                try run.backward(input: layerInput(run.first), output: outputs[run.last].baseAddress!, outputGradient: dy,
                                 inputGradient: run.first == 0 ? nil : dx, batch: batch, context: context)
            }
            swap(&dy, &dx)
            try gradientsReady(gradientsFinal[stepIndex])
        }
    }

    public func zeroGradients() {
        gradients.update(repeating: 0)
    }

    /// Kernel and bias penalties (Keras kernel_regularizer / bias_regularizer): adds their
    /// gradient into `gradients` and returns their value. Runs after the allreduce, on the
    /// already-averaged gradient, so every rank adds it exactly once.
    public func applyWeightPenalties() -> Double {
        applyWeightPenalties(range: 0..<trainableCount, gradients: gradients.baseAddress!)
    }

    /// The penalties of the parameters in `range` of the flat buffer only, whose gradients start
    /// at `gradients` (this rank's reduced slice under the sharded update). Returns their share
    /// of the penalty value; the shares of all ranks sum to the whole.
    public func applyWeightPenalties(range: Range<Int>, gradients: UnsafeMutablePointer<Float>) -> Double {
        var total = 0.0
        for (offset, count, penalty) in weightPenalties {
            let lower = max(offset, range.lowerBound), upper = min(offset + count, range.upperBound)
            guard lower < upper else { continue }
            total += penalty.apply(values: parameters.baseAddress! + lower,
                                   gradients: gradients + (lower - range.lowerBound), count: upper - lower)
        }
        return total
    }

    /// Kernel and bias penalties' value alone (for validation loss, which Keras reports with them).
    public func weightPenalty() -> Double {
        var total = 0.0
        for (offset, count, penalty) in weightPenalties {
            total += penalty.value(of: parameters.baseAddress! + offset, count: count)
        }
        return total
    }

    /// The ranges of `layers` that run fused, in order.
    var fusedRuns: [ClosedRange<Int>] {
        steps.compactMap { step in
            guard case .fused(let run) = step else { return nil }
            return run.first...(run.poolIndex ?? run.last)
        }
    }

    public var hasConstraints: Bool { !constraints.isEmpty }
    public var hasWeightPenalties: Bool { !weightPenalties.isEmpty }

    /// Projects the constrained tensors (Keras kernel_constraint / bias_constraint) after an
    /// update. Every rank holds every parameter and projects all of them: the same values in,
    /// the same values out.
    public func applyConstraints() {
        for (offset, rows, rowLength, constraint) in constraints {
            constraint.apply(parameters.baseAddress! + offset, rows: rows, rowLength: rowLength)
        }
    }
}
