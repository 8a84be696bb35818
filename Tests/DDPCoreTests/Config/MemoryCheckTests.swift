import Foundation
import XCTest
@testable import DDPCore

/// Layer sizes that cannot be allocated get one clear error naming the key and the bytes, never
/// a crash; the bound follows this machine's memory.
final class MemoryCheckTests: XCTestCase {
    private let model = smallTrainingYAML

    func testLayerTooLargeForMemoryNamesTheKeyAndTheBytes() {
        assertDDPError(.config, containing: ["model.layers[0].units", "needs at least", "bytes", "GiB", "this machine has"]) {
            try TrainingConfig.parse(yaml: self.model, overrides: ["model.layers.0.units=2000000000"])
        }
        assertDDPError(.config, containing: ["model.layers[1].units", "more than 2^63 bytes"]) {
            try TrainingConfig.parse(yaml: self.model, overrides: ["model.layers.1.units=\(Int.max)"])
        }
        assertDDPError(.config, containing: ["model.inputs", "bytes"]) {
            try TrainingConfig.parse(yaml: self.model, overrides: ["model.inputs=3000000000"])
        }
        assertDDPError(.config, containing: ["training.batch_size", "activations for 1000000000 rows"]) {
            try TrainingConfig.parse(yaml: self.model, overrides: ["training.batch_size=1000000000"])
        }
    }

    /// The estimate is a lower bound: a model a quarter the machine's memory in parameters passes
    /// the check (it is not allocated here), one twice the memory does not.
    func testTheBoundFollowsThisMachinesMemory() throws {
        let quarter = MemoryCheck.physicalBytes / 4 / 4 / 2 / 1024     // floats per unit of a 1024-input layer, params + grads
        _ = try TrainingConfig.parse(yaml: model, overrides: ["model.inputs=1024", "model.layers.0.units=\(quarter / 2)"])
        assertDDPError(.config, containing: ["model.layers[0].units"]) {
            try TrainingConfig.parse(yaml: self.model, overrides: ["model.inputs=1024", "model.layers.0.units=\(quarter * 8)"])
        }
    }
}
