import DDPCore
import Foundation
import XCTest

/// `ddp predict` and `ddp eval` on saved weights, as a user runs them (one process, real files):
/// predict's classes agree exactly with eval's accuracy; neither needs the training data once
/// the weights carry the input normalization; older weights without it refit with a notice and
/// predict the same; bad input gets one clear error.
final class PredictTests: IntegrationTestCase {

    /// Three classes in four features on very different scales (so the normalization matters),
    /// with overlap (so accuracy is below 1 and the comparison means something).
    private func writeData(_ name: String, rows: Int, seed: UInt64, label: Bool) throws -> String {
        var state = seed
        func uniform() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
        var text = label ? "f0,f1,f2,f3,label\n" : "f0,f1,f2,f3\n"
        for row in 0..<rows {
            let c = row % 3
            let values = [1000 + 300 * Double(c) + 400 * uniform(), 0.01 * Double(c) + 0.02 * uniform(),
                          -50 + 5 * uniform(), Double(c == 2 ? 1 : 0) * 3 + 6 * uniform()]
            text += values.map { String(format: "%.6g", $0) }.joined(separator: ",") + (label ? ",\(c)\n" : "\n")
        }
        let file = path(name)
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    private func config(train: String, test: String, loss: String = "{type: cross_entropy, label_smoothing: 0.1}") -> String {
        """
        seed: 3
        data:
          train: {format: csv, path: \(train), label: label}
          test: {format: csv, path: \(test), label: label}
          validation_split: 0.2
          normalize: standardize
        model:
          inputs: 4
          layers:
            - {type: dense, units: 16}
            - {type: batchnorm}
            - {type: activation, fn: relu}
            - {type: dense, units: 3}
        loss: \(loss)
        optimizer: {type: adam, lr: 0.01}
        training: {epochs: 4, batch_size: 32}
        checkpoint: {every_epochs: 1, keep: 1}
        """
    }

    private struct Table {
        var header: [String]
        var rows: [[String]]
        init(_ text: String) {
            let lines = text.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
            header = lines.first ?? []
            rows = Array(lines.dropFirst())
        }
        func column(_ name: String) -> [String] {
            guard let index = header.firstIndex(of: name) else { return [] }
            return rows.map { $0[index] }
        }
    }

    private func evaluation(_ result: ProcessResult) throws -> [String: Any] {
        let line = try XCTUnwrap(result.stdout.split(separator: "\n").last, result.tail)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], result.tail)
    }

    func testPredictAgreesWithEvalWithoutTrainingDataAndOldWeightsRefit() throws {
        let trainFile = try writeData("train.csv", rows: 600, seed: 1, label: true)
        let test = try writeData("test.csv", rows: 300, seed: 2, label: true)
        let unlabeled = try writeData("new.csv", rows: 300, seed: 2, label: false)
        let configPath = try writeConfig("config.yaml", config(train: trainFile, test: test))
        let run = path("run")
        try train(np: nil, config: configPath, runDirectory: run)
        let weights = run + "/model.safetensors"

        // Every weights file the trainer writes carries the transform.
        for file in [weights, run + "/best.safetensors"] + ((try? FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints")) ?? [])
            .filter { $0.hasSuffix(".safetensors") }.map({ run + "/checkpoints/" + $0 }) {
            let metadata = try SafeTensors.read(path: file).metadata
            XCTAssertEqual(metadata["ddp.input_normalize"], "standardize", file)
            XCTAssertEqual(metadata["ddp.input_scale"]?.split(separator: ",").count, 4, file)
        }

        let eval = try runDDP(np: nil, ["eval", "--config", configPath, "--weights", weights])
        XCTAssertEqual(eval.status, 0, eval.tail)
        let evaluated = try evaluation(eval)
        let accuracy = try XCTUnwrap(evaluated["accuracy"] as? Double)
        XCTAssertEqual(evaluated["samples"] as? Int, 300)
        XCTAssertGreaterThan(accuracy, 0.5)
        XCTAssertLessThan(accuracy, 1, "a perfect score would not test the agreement")

        let labelled = try runDDP(np: nil, ["predict", "--config", configPath, "--weights", weights, "--input", test, "--label", "label"])
        XCTAssertEqual(labelled.status, 0, labelled.tail)
        let table = Table(labelled.stdout)
        XCTAssertEqual(table.header, ["class", "p_0", "p_1", "p_2", "label"])
        XCTAssertEqual(table.rows.count, 300)
        let classes = table.column("class"), labels = table.column("label")
        let correct = zip(classes, labels).filter { $0 == $1 }.count
        // eval's accuracy is its correct count / 300 (a sum of doubles): the counts agree exactly.
        XCTAssertEqual(correct, Int((accuracy * 300).rounded()), "predict's argmax agrees exactly with eval's accuracy")
        // eval's confusion matrix (rows the label) is predict's (label, class) counts, and its
        // macro F1 the mean of the per-class F1 those counts give.
        var counts = [[Int]](repeating: [0, 0, 0], count: 3)
        for (predicted, label) in zip(classes, labels) { counts[Int(label)!][Int(predicted)!] += 1 }
        XCTAssertEqual(evaluated["confusion_matrix"] as? [[Int]], counts)
        let f1 = (0..<3).map { c -> Double in
            let tp = Double(counts[c][c]), predicted = Double(counts.map { $0[c] }.reduce(0, +)), actual = Double(counts[c].reduce(0, +))
            let p = predicted > 0 ? tp / predicted : 0, r = actual > 0 ? tp / actual : 0
            return p + r > 0 ? 2 * p * r / (p + r) : 0
        }
        XCTAssertEqual(try XCTUnwrap(evaluated["f1"] as? Double), f1.reduce(0, +) / 3, accuracy: 1e-12)
        XCTAssertEqual((evaluated["per_class"] as? [[String: Any]])?.count, 3)
        // eval's loss is the config's smoothed cross-entropy (ε = 0.1, torch's rule), recomputed
        // from predict's probabilities: (1 − ε)·(−log p_y) + ε·mean_k(−log p_k).
        var smoothedLoss = 0.0
        for row in table.rows {
            let p = row[1...3].compactMap(Double.init)
            XCTAssertEqual(p.count, 3)
            XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-5)
            XCTAssertEqual(p.firstIndex(of: p.max()!), Int(row[0]))
            smoothedLoss += 0.9 * -log(p[Int(row[4])!]) + 0.1 * p.map { -log($0) }.reduce(0, +) / 3
        }
        XCTAssertEqual(smoothedLoss / 300, try XCTUnwrap(evaluated["loss"] as? Double), accuracy: 1e-5)

        // A checkpoint's tensors file predicts too: the last one holds the final epoch's weights,
        // which are model.safetensors's (no early stopping here).
        let checkpoints = try FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints").filter { $0.hasSuffix(".safetensors") }
        let checkpoint = run + "/checkpoints/" + (try XCTUnwrap(checkpoints.max()))
        let fromCheckpoint = try runDDP(np: nil, ["predict", "--config", configPath, "--weights", checkpoint, "--input", test, "--label", "label"])
        XCTAssertEqual(fromCheckpoint.status, 0, fromCheckpoint.tail)
        XCTAssertEqual(fromCheckpoint.stdout, labelled.stdout)

        // Unlabeled input (no label column), to a file: the same classes and probabilities.
        let output = path("predictions.csv")
        let plain = try runDDP(np: nil, ["predict", "--config", configPath, "--weights", weights, "--input", unlabeled, "--output", output])
        XCTAssertEqual(plain.status, 0, plain.tail)
        XCTAssertEqual(plain.stdout, "")
        let written = Table(try String(contentsOfFile: output, encoding: .utf8))
        XCTAssertEqual(written.header, ["class", "p_0", "p_1", "p_2"])
        XCTAssertEqual(written.rows, table.rows.map { Array($0.prefix(4)) })

        // A symbolic link stays a link: its target is written (a regular file), or written into
        // (a device); a link to a directory is refused.
        let linkedFile = path("linked.csv"), link = path("link.csv"), deviceLink = path("to-null.csv"), directoryLink = path("to-dir.csv")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: linkedFile)
        try FileManager.default.createSymbolicLink(atPath: deviceLink, withDestinationPath: "/dev/null")
        try FileManager.default.createSymbolicLink(atPath: directoryLink, withDestinationPath: path(""))
        for target in [link, deviceLink] {
            let linked = try runDDP(np: nil, ["predict", "--config", configPath, "--weights", weights, "--input", unlabeled, "--output", target])
            XCTAssertEqual(linked.status, 0, linked.tail)
            XCTAssertNotNil(try? FileManager.default.destinationOfSymbolicLink(atPath: target), "\(target) is no longer a symbolic link")
        }
        XCTAssertEqual(try String(contentsOfFile: linkedFile, encoding: .utf8), try String(contentsOfFile: output, encoding: .utf8))
        let refused = try runDDP(np: nil, ["predict", "--config", configPath, "--weights", weights, "--input", unlabeled, "--output", directoryLink])
        XCTAssertEqual(refused.status, 1, refused.tail)
        XCTAssertTrue(refused.stderr.contains("is a directory"), refused.tail)

        // Without the training data: eval and predict give the same figures.
        try FileManager.default.moveItem(atPath: trainFile, toPath: path("moved-away.csv"))
        let evalAlone = try runDDP(np: nil, ["eval", "--config", configPath, "--weights", weights])
        XCTAssertEqual(evalAlone.status, 0, evalAlone.tail)
        XCTAssertEqual(try evaluation(evalAlone)["accuracy"] as? Double, accuracy)
        XCTAssertEqual(try evaluation(evalAlone)["loss"] as? Double, evaluated["loss"] as? Double)
        let predictAlone = try runDDP(np: nil, ["predict", "--config", configPath, "--weights", weights, "--input", unlabeled])
        XCTAssertEqual(predictAlone.status, 0, predictAlone.tail)
        XCTAssertEqual(predictAlone.stdout, try String(contentsOfFile: output, encoding: .utf8))
        XCTAssertEqual(predictAlone.stderr, "", "no notice when the weights carry the normalization")

        // Weights written before the transform travelled: the same tensors, no metadata.
        let old = path("old.safetensors")
        let contents = try SafeTensors.read(path: weights)
        try SafeTensors.write(contents.order.map { contents.tensors[$0]! }, to: old)
        let missing = try runDDP(np: nil, ["predict", "--config", configPath, "--weights", old, "--input", unlabeled])
        XCTAssertNotEqual(missing.status, 0, "old weights need the training data to refit")
        XCTAssertTrue(missing.stderr.contains("carries no input normalization"), missing.stderr)
        XCTAssertTrue(missing.stderr.contains(trainFile), missing.stderr)
        try FileManager.default.moveItem(atPath: path("moved-away.csv"), toPath: trainFile)
        let refit = try runDDP(np: nil, ["predict", "--config", configPath, "--weights", old, "--input", unlabeled])
        XCTAssertEqual(refit.status, 0, refit.tail)
        XCTAssertEqual(refit.stdout, predictAlone.stdout, "refitting gives the same predictions")
        let notice = refit.stderr.split(separator: "\n")
        XCTAssertEqual(notice.count, 1, refit.stderr)
        XCTAssertTrue(refit.stderr.contains("\(old) carries no input normalization"), refit.stderr)
        let evalOld = try runDDP(np: nil, ["eval", "--config", configPath, "--weights", old])
        XCTAssertEqual(evalOld.status, 0, evalOld.tail)
        XCTAssertEqual(try evaluation(evalOld)["accuracy"] as? Double, accuracy)
        XCTAssertTrue(evalOld.stderr.contains("carries no input normalization"), evalOld.stderr)
    }

    /// Binary cross-entropy on .npy input without a labels file: p_1 is the sigmoid output and
    /// the class its > 0.5 decision, matching eval's accuracy when the labels are given.
    /// Under mpirun the ranks score the chunks of rows (1,024 each) and rank 0 writes: 3 ranks
    /// over 2,500 rows write the bytes one process writes, to a file and to stdout, once.
    func testPredictUnderMPIShardsTheRowsAndWritesOneProcessesOutput() throws {
        let trainFile = try writeData("train.csv", rows: 300, seed: 1, label: true)
        let unlabeled = try writeData("new.csv", rows: 2_500, seed: 5, label: false)
        let configPath = try writeConfig("config.yaml", config(train: trainFile, test: trainFile))
        try train(np: nil, config: configPath, runDirectory: path("run"), ["--set", "training.epochs=2"])
        let predict = ["predict", "--config", configPath, "--weights", path("run/model.safetensors"), "--input", unlabeled]
        let oneThread: [String: String?] = ["OPENBLAS_NUM_THREADS": "1"]   // the same GEMM results in every process
        let single = try runDDP(np: nil, predict + ["--output", path("one.csv")], environment: oneThread)
        XCTAssertEqual(single.status, 0, single.tail)
        let sharded = try runDDP(np: 3, predict + ["--output", path("three.csv")], environment: oneThread)
        XCTAssertEqual(sharded.status, 0, sharded.tail)
        let one = try String(contentsOfFile: path("one.csv"), encoding: .utf8)
        XCTAssertEqual(one.split(separator: "\n").count, 2_501)
        XCTAssertEqual(try String(contentsOfFile: path("three.csv"), encoding: .utf8), one, "3 ranks against one process")
        let printed = try runDDP(np: 3, predict, environment: oneThread)
        XCTAssertEqual(printed.status, 0, printed.tail)
        XCTAssertEqual(printed.stdout, one, "printed once, in order")
    }

    func testBinaryPredictionsFromNpy() throws {
        let configPath = try writeConfig("moons.yaml", """
            seed: 1
            data:
              train: {format: moons, samples: 200, noise: 0.2}
              test: {format: npy, features: \(path("x.npy")), labels: \(path("y.npy"))}
              normalize: standardize
            model:
              inputs: 2
              layers:
                - {type: dense, units: 16, activation: relu}
                - {type: dense, units: 1, activation: sigmoid}
            loss: {type: binary_crossentropy, from_logits: false}
            optimizer: {type: adam, lr: 0.01}
            training: {epochs: 5, batch_size: 32}
            """)
        var state: UInt64 = 7
        let x = (0..<80).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return -1.5 + 4 * Float(state >> 40) / Float(1 << 24)
        }
        let y = (0..<40).map { Float(x[2 * $0] + x[2 * $0 + 1] > 0.8 ? 1 : 0) }
        func bytes(_ values: [Float]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }
        try Data(NPYFile.encode(descr: "<f4", shape: [40, 2], values: bytes(x))).write(to: URL(fileURLWithPath: path("x.npy")))
        try Data(NPYFile.encode(descr: "<f4", shape: [40], values: bytes(y))).write(to: URL(fileURLWithPath: path("y.npy")))
        let run = path("run")
        try train(np: nil, config: configPath, runDirectory: run)

        let eval = try runDDP(np: nil, ["eval", "--config", configPath, "--weights", run + "/model.safetensors"])
        XCTAssertEqual(eval.status, 0, eval.tail)
        let accuracy = try XCTUnwrap(try evaluation(eval)["accuracy"] as? Double)
        let result = try runDDP(np: nil, ["predict", "--config", configPath, "--weights", run + "/model.safetensors", "--input", path("x.npy")])
        XCTAssertEqual(result.status, 0, result.tail)
        let table = Table(result.stdout)
        XCTAssertEqual(table.header, ["class", "p_0", "p_1"])
        XCTAssertEqual(table.rows.count, 40)
        var correct = 0
        for (row, label) in zip(table.rows, y) {
            let p0 = try XCTUnwrap(Double(row[1])), p1 = try XCTUnwrap(Double(row[2]))
            XCTAssertEqual(p0 + p1, 1, accuracy: 1e-6)
            XCTAssertEqual(row[0], p1 > 0.5 ? "1" : "0")
            if Float(row[0]) == label { correct += 1 }
        }
        XCTAssertEqual(correct, Int((accuracy * 40).rounded()))
    }

    /// A row with a NaN feature: refused with its line and column; with --allow-nan the other
    /// rows are predicted exactly as without that row, the NaN row gets empty prediction fields
    /// (its label kept), and stderr counts it.
    func testNonFiniteRowsAreRefusedOrLeftUnscoredWithAllowNaN() throws {
        let trainFile = try writeData("train.csv", rows: 150, seed: 1, label: true)
        let test = try writeData("test.csv", rows: 30, seed: 2, label: true)
        let configPath = try writeConfig("config.yaml", config(train: trainFile, test: test))
        let run = path("run")
        try train(np: nil, config: configPath, runDirectory: run, ["--set", "training.epochs=1"])
        var lines = try String(contentsOfFile: test, encoding: .utf8).split(separator: "\n").map(String.init)
        var fields = lines[4].split(separator: ",").map(String.init)      // data row 3 (line 5)
        fields[1] = "nan"
        lines[4] = fields.joined(separator: ",")
        let withNaN = path("with-nan.csv")
        try (lines.joined(separator: "\n") + "\n").write(toFile: withNaN, atomically: true, encoding: .utf8)
        let predict = ["predict", "--config", configPath, "--weights", run + "/model.safetensors", "--label", "label"]

        let refused = try runDDP(np: nil, predict + ["--input", withNaN])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("with-nan.csv line 5, column 2 ('f1')"), refused.stderr)
        XCTAssertEqual(refused.stdout, "")

        let allowed = try runDDP(np: nil, predict + ["--input", withNaN, "--allow-nan"])
        XCTAssertEqual(allowed.status, 0, allowed.tail)
        XCTAssertTrue(allowed.stderr.contains("1 of 30 rows left unscored") && allowed.stderr.contains("rows 3,"), allowed.stderr)
        let reference = Table(try runDDP(np: nil, predict + ["--input", test]).stdout), table = Table(allowed.stdout)
        XCTAssertEqual(table.header, reference.header)
        XCTAssertEqual(table.rows[3], ["", "", "", "", reference.rows[3].last!], "the NaN row: empty fields, its label kept")
        for row in table.rows.indices where row != 3 { XCTAssertEqual(table.rows[row], reference.rows[row], "row \(row)") }
    }

    func testBadInputGetsOneClearError() throws {
        let trainFile = try writeData("train.csv", rows: 150, seed: 1, label: true)
        let test = try writeData("test.csv", rows: 30, seed: 2, label: true)
        let configPath = try writeConfig("config.yaml", config(train: trainFile, test: test))
        let run = path("run")
        try train(np: nil, config: configPath, runDirectory: run, ["--set", "training.epochs=1"])
        let weights = run + "/model.safetensors"

        func expectError(_ arguments: [String], _ parts: [String], file: StaticString = #filePath, line: UInt = #line) throws {
            let result = try runDDP(np: nil, arguments, file: file, line: line)
            XCTAssertNotEqual(result.status, 0, result.tail, file: file, line: line)
            XCTAssertEqual(result.stdout, "", file: file, line: line)
            let lines = result.stderr.split(separator: "\n").filter { !$0.hasPrefix("Usage:") && !$0.hasPrefix("  See") && !$0.isEmpty }
            XCTAssertEqual(lines.count, 1, result.stderr, file: file, line: line)
            for part in parts { XCTAssertTrue(result.stderr.contains(part), "'\(part)' not in: \(result.stderr)", file: file, line: line) }
        }
        let predict = ["predict", "--config", configPath, "--weights", weights]
        // The training file still has its label column: five features for a model of four.
        try expectError(predict + ["--input", test], ["test.csv", "5 features", "model.inputs is 4", "--label"])
        try expectError(predict + ["--input", path("absent.csv")], ["absent.csv"])
        try expectError(predict + ["--input", path("data.bin")], ["--format"])
        try expectError(predict + ["--input", test, "--label", "nope"], ["'nope'", "test.csv"])
        try expectError(predict + ["--input", test, "--label", "label", "--set", "model.layers.0.units=7"], ["model.safetensors", "0.weight", "[7, 4]"])
        try expectError(["predict", "--config", configPath, "--weights", path("absent.safetensors"), "--input", test], ["absent.safetensors"])
    }
}
