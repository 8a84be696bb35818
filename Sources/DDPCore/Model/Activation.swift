#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Element-wise activations with torch.nn numerics: LeakyReLU slope 0.01, ELU α = 1,
/// SELU (α = 1.6732632, λ = 1.0507010), exact GELU x·Φ(x) (torch's default, not the tanh
/// approximation), Softmax over the features of each row.
public enum ActivationFunction: String, Sendable, CaseIterable {
    case linear, relu, leakyRelu = "leaky_relu", elu, selu, gelu, tanh, sigmoid, softmax
}

/// An activation as its own layer. Backward uses the stored output where the derivative is a
/// function of it (tanh, sigmoid, softmax, relu) and the input otherwise.
public final class Activation: Layer {
    public let configIndex: Int
    public let function: ActivationFunction
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    public var displayName: String { "Activation(\(function.rawValue))" }

    static let leakySlope: Float = 0.01
    static let seluAlpha: Float = 1.673_263_2
    static let seluScale: Float = 1.050_701

    public init(configIndex: Int, function: ActivationFunction, width: Int) {
        self.configIndex = configIndex
        self.function = function
        inputWidth = width
    }

    public func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                        batch: Int, context: StepContext) throws {
        let count = batch * inputWidth
        switch function {
        case .linear: output.update(from: input, count: count)
        case .relu: Self.relu(input, output, count)
        case .leakyRelu:
            let slope = Self.leakySlope
            for i in 0..<count { output[i] = input[i] > 0 ? input[i] : slope * input[i] }
        case .elu: for i in 0..<count { output[i] = input[i] > 0 ? input[i] : expm1f(input[i]) }
        case .selu:
            let alpha = Self.seluAlpha, scale = Self.seluScale
            for i in 0..<count { output[i] = scale * (input[i] > 0 ? input[i] : alpha * expm1f(input[i])) }
        case .gelu:
            for i in 0..<count { output[i] = 0.5 * input[i] * (1 + erff(input[i] * 0.707_106_77)) }
        case .tanh: for i in 0..<count { output[i] = tanhf(input[i]) }
        case .sigmoid: for i in 0..<count { output[i] = Self.sigmoid(input[i]) }
        case .softmax:
            let width = inputWidth
            for row in 0..<batch { Self.softmax(input + row * width, output + row * width, width) }
        }
    }

    public func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                         outputGradient dy: UnsafeMutablePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>?,
                         batch: Int, context: StepContext) throws {
        guard let dx else { return }
        let count = batch * inputWidth
        let x = input, y = output
        switch function {
        case .linear: dx.update(from: dy, count: count)
        case .relu: Self.reluBackward(x, dy, dx, count)
        case .leakyRelu:
            let slope = Self.leakySlope
            for i in 0..<count { dx[i] = x[i] > 0 ? dy[i] : slope * dy[i] }
        case .elu: for i in 0..<count { dx[i] = x[i] > 0 ? dy[i] : dy[i] * (y[i] + 1) }
        case .selu:
            let alphaScale = Self.seluAlpha * Self.seluScale, scale = Self.seluScale
            for i in 0..<count { dx[i] = x[i] > 0 ? scale * dy[i] : dy[i] * (y[i] + alphaScale) }
        case .gelu:
            // d/dx x·Φ(x) = Φ(x) + x·φ(x)
            for i in 0..<count {
                let cdf = 0.5 * (1 + erff(x[i] * 0.707_106_77))
                let pdf = 0.398_942_3 * expf(-0.5 * x[i] * x[i])
                dx[i] = dy[i] * (cdf + x[i] * pdf)
            }
        case .tanh: for i in 0..<count { dx[i] = dy[i] * (1 - y[i] * y[i]) }
        case .sigmoid: for i in 0..<count { dx[i] = dy[i] * y[i] * (1 - y[i]) }
        case .softmax:
            // dx = y ⊙ (dy − Σ_j dy_j·y_j), per row
            let width = inputWidth
            for row in 0..<batch {
                let o = row * width
                var dot: Float = 0
                for j in 0..<width { dot += dy[o + j] * y[o + j] }
                for j in 0..<width { dx[o + j] = y[o + j] * (dy[o + j] - dot) }
            }
        }
    }

    /// max(x, 0) (NaN stays NaN, as torch.relu), eight lanes at a time: the scalar loop is not
    /// vectorized because the pointers may alias.
    static func relu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        let end = count - count % 8
        var i = 0
        while i < end {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(y + i).storeBytes(of: v.replacing(with: 0, where: v .<= 0), as: SIMD8<Float>.self)
            i += 8
        }
        while i < count { y[i] = x[i] <= 0 ? 0 : x[i]; i += 1 }
    }

    /// dx = dy where x > 0, else 0; eight lanes at a time.
    static func reluBackward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ count: Int) {
        let end = count - count % 8
        var i = 0
        while i < end {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            let g = UnsafeRawPointer(dy + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(dx + i).storeBytes(of: g.replacing(with: 0, where: v .<= 0), as: SIMD8<Float>.self)
            i += 8
        }
        while i < count { dx[i] = x[i] <= 0 ? 0 : dy[i]; i += 1 }
    }

    /// Numerically stable logistic: never evaluates exp of a large positive number.
    @inline(__always)
    public static func sigmoid(_ x: Float) -> Float {
        if x >= 0 { return 1 / (1 + expf(-x)) }
        let e = expf(x)
        return e / (1 + e)
    }

    /// Softmax of one row, shifted by its maximum for stability.
    @inline(__always)
    static func softmax(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ width: Int) {
        var maximum = -Float.infinity
        for j in 0..<width { maximum = max(maximum, x[j]) }
        var sum: Float = 0
        for j in 0..<width { y[j] = expf(x[j] - maximum); sum += y[j] }
        let inverse = 1 / sum
        for j in 0..<width { y[j] *= inverse }
    }
}

/// `type: activation` (`fn`, default relu).
public struct ActivationSpec: ParsableLayerSpec, Equatable {
    static let typeName = "activation"
    public var function: ActivationFunction

    public init(_ function: ActivationFunction) { self.function = function }

    static func parse(_ entry: inout ConfigSection) throws -> ActivationSpec {
        ActivationSpec(try entry.choice("fn", default: ActivationFunction.relu))
    }

    /// Softmax normalizes one sample's whole row: on an image that would be over every pixel
    /// and channel at once (Keras's is over channels alone), so it asks for flat features.
    public func outputShape(input: FeatureShape) throws -> FeatureShape {
        if function == .softmax, input.image != nil {
            throw DDPError(.config, "gets the image \(input); softmax takes flat features: put {type: flatten} before it")
        }
        return input
    }
    public func parameterCount(input: FeatureShape) -> Int { 0 }
    public func makeLayers(configIndex: Int, input: FeatureShape, frozen: Bool) -> [Layer] {
        [Activation(configIndex: configIndex, function: function, width: input.count)]
    }
}
