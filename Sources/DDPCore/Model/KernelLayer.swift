/// What a dense layer and a convolution share: a kernel and an optional bias, with Keras's
/// initializer, regularizer and constraint keys and additive Gaussian weight noise. One place
/// parses the keys and draws the noise, so both kinds read and train them alike.
protocol KernelLayerSpec: ParsableLayerSpec {
    var useBias: Bool { get }
    var kernelInitializer: Initializer { get set }
    var biasInitializer: Initializer { get set }
    var kernelRegularizer: Penalty? { get set }
    var biasRegularizer: Penalty? { get set }
    var kernelConstraint: WeightConstraint? { get set }
    var biasConstraint: WeightConstraint? { get set }
    var weightNoise: Float { get set }
}

extension KernelLayerSpec {
    /// The kernel and bias keys of the entry (`use_bias` already read): Keras's defaults,
    /// glorot_uniform kernels and zero biases.
    mutating func parseKernelKeys(_ entry: inout ConfigSection) throws {
        kernelInitializer = try entry.choice("kernel_initializer", default: Initializer.glorotUniform)
        biasInitializer = try entry.choice("bias_initializer", default: Initializer.zeros)
        kernelRegularizer = try TrainingConfig.penalty(&entry, "kernel_regularizer")
        biasRegularizer = try TrainingConfig.penalty(&entry, "bias_regularizer")
        kernelConstraint = try WeightConstraint.parse(&entry, "kernel_constraint")
        biasConstraint = try WeightConstraint.parse(&entry, "bias_constraint")
        if biasConstraint != nil && !useBias {
            throw DDPError(.config, "\(entry.key("bias_constraint")): the layer has use_bias: false, so there is no bias to constrain")
        }
        weightNoise = try entry.float("weight_noise", default: 0, in: 0...1e6)
    }
}

/// Additive Gaussian weight noise (Graves 2011): W̃ = W + σ·ε, ε ~ N(0, 1) drawn afresh each
/// training step, keyed by (seed, global step, layer, index) so every rank draws the same W̃.
enum WeightNoise {
    static func draw(_ weight: UnsafePointer<Float>, into noisy: UnsafeMutablePointer<Float>, count: Int, sigma: Float,
                     context: StepContext, layer: Int) {
        let key = CounterRandom.bits(context.seed, .weightNoise, UInt64(context.globalStep), UInt64(layer))
        let sigma = Double(sigma)
        for i in 0..<count { noisy[i] = weight[i] + Float(sigma * CounterRandom.normal(rowKey: key, unit: i)) }
    }
}
