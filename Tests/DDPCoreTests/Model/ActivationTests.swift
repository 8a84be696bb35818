import Foundation
import XCTest
@testable import DDPCore

/// Every activation function: its backward pass against central differences and its values
/// against the textbook formulas.
final class ActivationTests: XCTestCase {
    func testEveryActivation() throws {
        for function in ActivationFunction.allCases {
            let layer = Activation(configIndex: 0, function: function, width: 4)
            let probe = LayerProbe(layer, batch: 3)
            XCTAssertEqual(probe.parameterCount, 0)
            var random = TestRandom(seed: 10 + UInt64(function.rawValue.count))
            let inputs: [Float] = switch function {
            case .relu, .leakyRelu, .elu, .selu: random.awayFromZero(12, limit: 2.5, gap: 0.1)
            default: random.array(12, -2.5, 2.5)
            }
            fill(probe, inputs: inputs, seed: 20)
            try checkLayer(probe, "activation \(function.rawValue)", h: 1e-2)
        }
    }

    /// The forward values themselves, against the textbook formulas (torch's constants).
    func testActivationValues() throws {
        let x: [Double] = [-2.5, -1, -0.3, 0.2, 0.9, 3]
        let alpha = 1.6732632423543772, scale = 1.0507009873554805
        func erf(_ v: Double) -> Double { Foundation.erf(v) }
        let formulas: [ActivationFunction: (Double) -> Double] = [
            .linear: { $0 },
            .relu: { max($0, 0) },
            .leakyRelu: { $0 > 0 ? $0 : 0.01 * $0 },
            .elu: { $0 > 0 ? $0 : exp($0) - 1 },
            .selu: { scale * ($0 > 0 ? $0 : alpha * (exp($0) - 1)) },
            .gelu: { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) },
            .tanh: { Foundation.tanh($0) },
            .sigmoid: { 1 / (1 + exp(-$0)) },
        ]
        for function in ActivationFunction.allCases {
            let probe = LayerProbe(Activation(configIndex: 0, function: function, width: 6), batch: 1)
            store(x.map(Float.init), into: probe.input)
            try probe.forward()
            if function == .softmax {
                let denominator = x.reduce(0) { $0 + exp($1) }
                for j in 0..<6 { XCTAssertEqual(Double(probe.output[j]), exp(x[j]) / denominator, accuracy: 1e-6, "softmax") }
                continue
            }
            let formula = try XCTUnwrap(formulas[function])
            for j in 0..<6 {
                XCTAssertEqual(Double(probe.output[j]), formula(x[j]), accuracy: 1e-5 * max(1, abs(formula(x[j]))),
                               "\(function.rawValue)(\(x[j]))")
            }
        }
    }
}
