import Foundation
import XCTest
@testable import DDPCore

/// Config parsing with synthetic moons data (no files): values land where they should,
/// every error names the key and what was expected, and `--set` overrides apply.
final class TrainingConfigTests: XCTestCase {
    private let base = """
        seed: 7
        data:
          train: {format: moons, samples: 64, noise: 0.1}
          validation_split: 0.25
        model:
          inputs: 2
          layers:
            - {type: dense, units: 8, activation: relu, kernel_regularizer: {l2: 0.01}}
            - {type: batchnorm}
            - {type: dropout, rate: 0.2}
            - {type: dense, units: 2}
        loss: cross_entropy
        optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
        training: {epochs: 3, batch_size: 16}
        early_stopping: {monitor: val_loss, patience: 2}
        """

    /// `base` with the line that starts with `prefix` (after indentation) replaced, or removed when `line` is nil.
    private func edited(_ prefix: String, _ line: String?) -> String {
        var lines = base.components(separatedBy: "\n")
        let index = lines.firstIndex { $0.trimmingCharacters(in: .whitespaces).hasPrefix(prefix) }!
        if let line {
            let indent = lines[index].prefix { $0 == " " }
            lines[index] = indent + line
        } else {
            lines.remove(at: index)
        }
        return lines.joined(separator: "\n")
    }

    func testParsesTheBaseConfig() throws {
        let config = try TrainingConfig.parse(yaml: base)
        XCTAssertEqual(config.seed, 7)
        XCTAssertEqual(config.data.train, .moons(samples: 64, noise: 0.1, seed: 7))
        XCTAssertEqual(config.data.validationSplit, 0.25)
        XCTAssertEqual(config.model.inputs, 2)
        XCTAssertEqual(config.model.layers.count, 4)
        var dense = DenseSpec(units: 8, activation: .relu)
        dense.kernelRegularizer = Penalty(l2: 0.01)
        XCTAssertEqual(config.model.layers[0], LayerConfig(dense))
        XCTAssertEqual(config.model.layers[1], LayerConfig(BatchNormSpec(momentum: 0.1, epsilon: 1e-5)))
        XCTAssertEqual(config.model.layers[2], LayerConfig(DropoutSpec(rate: 0.2)))
        XCTAssertNotEqual(config.model.layers[2], LayerConfig(DropoutSpec(rate: 0.3)))
        XCTAssertNotEqual(config.model.layers[1], LayerConfig(DropoutSpec(rate: 0.2)))
        XCTAssertEqual(config.loss, .crossEntropy)
        XCTAssertEqual(config.optimizer.kind, .sgd)
        XCTAssertEqual(config.optimizer.learningRate, 0.05)
        XCTAssertEqual(config.optimizer.momentum, 0.9)
        XCTAssertEqual(config.optimizer.decay, .kernels)
        XCTAssertEqual(config.training.epochs, 3)
        XCTAssertEqual(config.training.batchSize, 16)
        XCTAssertEqual(config.earlyStopping?.patience, 2)
        XCTAssertEqual(config.earlyStopping?.monitor, "val_loss")
        // The parsed model builds.
        let network = try Network(config: config.model)
        XCTAssertEqual(network.tensors.map(\.name), ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "3.weight", "3.bias"])
    }

    func testLossAndScheduleForms() throws {
        var config = try TrainingConfig.parse(yaml: edited("loss:", "loss: {type: binary_crossentropy, from_logits: false}"))
        XCTAssertEqual(config.loss, .binaryCrossEntropy(fromLogits: false))
        config = try TrainingConfig.parse(yaml: edited("loss:", "loss: mse").replacingOccurrences(of: "early_stopping: {monitor: val_loss, patience: 2}", with: ""))
        XCTAssertEqual(config.loss, .meanSquaredError)
        config = try TrainingConfig.parse(yaml: base + "\nschedule: {type: cosine, eta_min: 0.001, warmup_steps: 5}")
        XCTAssertEqual(config.schedule, LearningRateSchedule(kind: .cosine(tMax: 3, minimum: 0.001), warmupSteps: 5))
        config = try TrainingConfig.parse(yaml: base + "\nschedule: {type: step, step_size: 4, gamma: 0.5}")
        XCTAssertEqual(config.schedule, LearningRateSchedule(kind: .step(stepSize: 4, gamma: 0.5)))
    }

    func testDistributedTimeout() throws {
        XCTAssertEqual(try TrainingConfig.parse(yaml: base).distributed.timeoutSeconds, 300)
        let config = try TrainingConfig.parse(yaml: base + "\ndistributed: {timeout_seconds: 12.5}")
        XCTAssertEqual(config.distributed.timeoutSeconds, 12.5)
        XCTAssertTrue(config.distributed.shardedUpdate, "the other key keeps its default")
        assertDDPError(.config, containing: ["distributed.timeout_seconds", "[1.0, 604800.0]", "0"]) {
            try TrainingConfig.parse(yaml: self.base + "\ndistributed: {timeout_seconds: 0}")
        }
        assertDDPError(.config, containing: ["distributed.timeout_seconds", "expected a number", "soon"]) {
            try TrainingConfig.parse(yaml: self.base + "\ndistributed: {timeout_seconds: soon}")
        }
    }

    // MARK: Errors name the key and what was expected

    /// `model.inputs` as an integer, as [height, width, channels], or taken from
    /// data.image_shape; an MLP sees flat features either way.
    func testModelInputsForms() throws {
        let shaped = edited("validation_split:", "validation_split: 0.25\n  image_shape: [1, 2]")
        XCTAssertEqual(try TrainingConfig.parse(yaml: shaped).model.inputShape, .features(2))
        let omitted = shaped.replacingOccurrences(of: "  inputs: 2\n", with: "")
        XCTAssertEqual(try TrainingConfig.parse(yaml: omitted).model.inputShape, .features(2))
        let listed = edited("inputs:", "inputs: [1, 2, 1]")
        XCTAssertEqual(try TrainingConfig.parse(yaml: listed).model.inputShape, .features(2))
        assertDDPError(.config, containing: ["missing key 'model.inputs'", "no image shape"]) {
            try TrainingConfig.parse(yaml: self.edited("inputs:", nil))
        }
        assertDDPError(.config, containing: ["data.image_shape (1, 2, 1) holds 2 values", "model.inputs is 3"]) {
            try TrainingConfig.parse(yaml: shaped.replacingOccurrences(of: "inputs: 2", with: "inputs: 3"))
        }
        assertDDPError(.config, containing: ["model.inputs", "positive"]) {
            try TrainingConfig.parse(yaml: self.edited("inputs:", "inputs: 0"))
        }
    }

    func testUnknownKey() {
        assertDDPError(.config, containing: ["unknown key 'optimizer.learning_rate'", "lr"]) {
            try TrainingConfig.parse(yaml: self.edited("optimizer:", "optimizer: {type: sgd, learning_rate: 0.05}"))
        }
        assertDDPError(.config, containing: ["unknown key 'model.layers[2].ratee'", "rate"]) {
            try TrainingConfig.parse(yaml: self.edited("- {type: dropout", "- {type: dropout, ratee: 0.2}"))
        }
        assertDDPError(.config, containing: ["unknown key 'trainig'"]) {
            try TrainingConfig.parse(yaml: self.base + "\ntrainig: {epochs: 3}")
        }
    }

    func testOutOfRangeInteger() {
        assertDDPError(.config, containing: ["training.epochs", "≥ 1", "-1"]) {
            try TrainingConfig.parse(yaml: self.edited("training:", "training: {epochs: -1, batch_size: 16}"))
        }
        assertDDPError(.config, containing: ["model.layers[0].units", "≥ 1", "0"]) {
            try TrainingConfig.parse(yaml: self.edited("- {type: dense, units: 8", "- {type: dense, units: 0}"))
        }
        assertDDPError(.config, containing: ["model.layers[2].rate", "[0.0, 0.999999]", "1.5"]) {
            try TrainingConfig.parse(yaml: self.edited("- {type: dropout", "- {type: dropout, rate: 1.5}"))
        }
    }

    func testUnknownLayerType() {
        assertDDPError(.config, containing: ["model.layers[1].type", "'bathnorm'", "batchnorm", "dense", "dropout"]) {
            try TrainingConfig.parse(yaml: self.edited("- {type: batchnorm}", "- {type: bathnorm}"))
        }
        assertDDPError(.config, containing: ["model.layers[0].activation", "'rellu'", "relu", "leaky_relu", "gelu"]) {
            try TrainingConfig.parse(yaml: self.edited("- {type: dense, units: 8", "- {type: dense, units: 8, activation: rellu}"))
        }
    }

    func testWrongValueType() {
        assertDDPError(.config, containing: ["optimizer.lr", "expected a number", "'fast'"]) {
            try TrainingConfig.parse(yaml: self.edited("optimizer:", "optimizer: {type: sgd, lr: fast}"))
        }
        assertDDPError(.config, containing: ["training.shuffle", "true or false", "'maybe'"]) {
            try TrainingConfig.parse(yaml: self.edited("training:", "training: {epochs: 3, shuffle: maybe}"))
        }
        assertDDPError(.config, containing: ["training.batch_size", "expected an integer", "'sixteen'"]) {
            try TrainingConfig.parse(yaml: self.edited("training:", "training: {batch_size: sixteen}"))
        }
        assertDDPError(.config, containing: ["unknown key 'optimizer.momentum'", "beta1"]) {
            try TrainingConfig.parse(yaml: self.base, overrides: ["optimizer.type=adam"])
        }
        assertDDPError(.config, containing: ["unknown key 'optimizer.beta1'"]) {
            try TrainingConfig.parse(yaml: self.edited("optimizer:", "optimizer: {type: sgd, beta1: 0.8}"))
        }
        assertDDPError(.config, containing: ["optimizer.type", "'lion'", "sgd", "adam", "adamw", "rmsprop"]) {
            try TrainingConfig.parse(yaml: self.edited("optimizer:", "optimizer: {type: lion}"))
        }
        assertDDPError(.config, containing: ["optimizer.decay", "'biases'", "kernels", "all"]) {
            try TrainingConfig.parse(yaml: self.edited("optimizer:", "optimizer: {type: sgd, decay: biases}"))
        }
        assertDDPError(.config, containing: ["early_stopping.mode", "'minimum'", "auto", "min", "max"]) {
            try TrainingConfig.parse(yaml: self.edited("early_stopping:", "early_stopping: {mode: minimum}"))
        }
    }

    func testMissingKeys() {
        assertDDPError(.config, containing: ["missing key 'data.train'"]) {
            try TrainingConfig.parse(yaml: self.edited("train:", nil))
        }
        assertDDPError(.config, containing: ["missing key 'model.layers[3].units'"]) {
            try TrainingConfig.parse(yaml: self.edited("- {type: dense, units: 2}", "- {type: dense}"))
        }
        assertDDPError(.config, containing: ["missing key 'optimizer'"]) {
            try TrainingConfig.parse(yaml: self.edited("optimizer:", nil))
        }
        assertDDPError(.config, containing: ["data.train.format", "moons", "csv"]) {
            try TrainingConfig.parse(yaml: self.edited("train:", "train: {samples: 64}"))
        }
    }

    func testCrossKeyErrors() {
        assertDDPError(.config, containing: ["early_stopping.monitor", "val_loss", "no validation data"]) {
            try TrainingConfig.parse(yaml: self.edited("validation_split:", nil))
        }
        assertDDPError(.config, containing: ["optimizer.nesterov", "momentum"]) {
            try TrainingConfig.parse(yaml: self.edited("optimizer:", "optimizer: {type: sgd, nesterov: true}"))
        }
        assertDDPError(.config, containing: ["early_stopping.monitor", "'val_f1'"]) {
            try TrainingConfig.parse(yaml: self.edited("early_stopping:", "early_stopping: {monitor: val_f1}"))
        }
    }

    func testErrorsNameTheSource() {
        assertDDPError(.config, containing: ["my.yaml: ", "training.epochs"]) {
            try TrainingConfig.parse(yaml: self.edited("training:", "training: {epochs: 0}"), source: "my.yaml")
        }
    }

    // MARK: --set overrides

    func testOverrides() throws {
        let config = try TrainingConfig.parse(yaml: base, overrides: [
            "training.epochs=5",
            "optimizer={type: adamw, lr: 0.001}",   // a section replaced whole
            "optimizer.lr=0.002",
            "model.layers.2.rate=0.4",          // list index
            "model.layers.0.units=16",
            "model.layers.0.kernel_regularizer.l1=0.001",
            "early_stopping.patience=7",
            "schedule.type=warmup",             // a new section
            "schedule.warmup_steps=3",
        ])
        XCTAssertEqual(config.training.epochs, 5)
        XCTAssertEqual(config.training.batchSize, 16, "untouched keys keep their values")
        XCTAssertEqual(config.optimizer.kind, .adamw)
        XCTAssertEqual(config.optimizer.learningRate, 0.002)
        XCTAssertEqual(config.optimizer.momentum, 0, "SGD's momentum went with its section")
        XCTAssertEqual(config.model.layers[2], LayerConfig(DropoutSpec(rate: 0.4)))
        var dense = DenseSpec(units: 16, activation: .relu)
        dense.kernelRegularizer = Penalty(l1: 0.001, l2: 0.01)
        XCTAssertEqual(config.model.layers[0], LayerConfig(dense))
        XCTAssertEqual(config.earlyStopping?.patience, 7)
        XCTAssertEqual(config.schedule, LearningRateSchedule(kind: .constant, warmupSteps: 3))
        // The resolved YAML records the overridden values.
        let reparsed = try TrainingConfig.parse(yaml: config.resolvedYAML)
        XCTAssertEqual(reparsed.training.epochs, 5)
        XCTAssertEqual(reparsed.model.layers[2], LayerConfig(DropoutSpec(rate: 0.4)))
        // Later overrides win.
        XCTAssertEqual(try TrainingConfig.parse(yaml: base, overrides: ["training.epochs=5", "training.epochs=9"]).training.epochs, 9)
        // null clears an optional key.
        XCTAssertNil(try TrainingConfig.parse(yaml: base, overrides: ["early_stopping=null"]).earlyStopping)
    }

    func testWeightNoiseKey() throws {
        let yaml = "data: {train: {format: moons}}\nmodel: {inputs: 2, layers: [{type: dense, units: 2, weight_noise: 0.05}]}\noptimizer: {type: sgd}"
        XCTAssertEqual((try TrainingConfig.parse(yaml: yaml).model.layers[0].spec as? DenseSpec)?.weightNoise, 0.05)
        assertDDPError(.config, containing: ["model.layers[0].weight_noise", "-0.1"]) {
            try TrainingConfig.parse(yaml: yaml.replacingOccurrences(of: "0.05", with: "-0.1"))
        }
        assertDDPError(.config, containing: ["weight_noise"]) {
            try TrainingConfig.parse(yaml: yaml.replacingOccurrences(of: "dense, units: 2", with: "dropout, rate: 0.1"))
        }
    }

    func testOverrideErrors() {
        assertDDPError(.config, containing: ["model.layers.9.rate", "'9'", "4 entries"]) {
            try TrainingConfig.parse(yaml: self.base, overrides: ["model.layers.9.rate=0.1"])
        }
        assertDDPError(.config, containing: ["model.layers.x.rate", "'x'"]) {
            try TrainingConfig.parse(yaml: self.base, overrides: ["model.layers.x.rate=0.1"])
        }
        assertDDPError(.config, containing: ["training.epochs", "expected dotted.key=value"]) {
            try TrainingConfig.parse(yaml: self.base, overrides: ["training.epochs"])
        }
        // An override is validated like the file: the key and the bad value are named.
        assertDDPError(.config, containing: ["training.epochs", "≥ 1", "-1"]) {
            try TrainingConfig.parse(yaml: self.base, overrides: ["training.epochs=-1"])
        }
        assertDDPError(.config, containing: ["unknown key 'optimizer.learning_rate'"]) {
            try TrainingConfig.parse(yaml: self.base, overrides: ["optimizer.learning_rate=0.1"])
        }
        assertDDPError(.config, containing: ["optimizer.lr", "'fast'"]) {
            try TrainingConfig.parse(yaml: self.base, overrides: ["optimizer.lr=fast"])
        }
    }
}
