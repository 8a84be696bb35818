import Foundation
import XCTest
@testable import DDPCore

/// Learning-rate schedules as pure functions of (epoch, step): each against its closed form, the
/// warmup's SequentialLR semantics, and every one replayed step by step against
/// torch.optim.lr_scheduler (`testMatchesTorchSchedulers`, CI's Python).
final class ScheduleTests: XCTestCase {
    func testStepSchedule() {
        let schedule = LearningRateSchedule(kind: .step(stepSize: 2, gamma: 0.5))
        let expected: [Double] = [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125]
        for (epoch, lr) in expected.enumerated() {
            XCTAssertEqual(Double(schedule.learningRate(base: 0.1, epoch: epoch, globalStep: epoch * 10, stepsPerEpoch: 10)), lr,
                           accuracy: 1e-8, "epoch \(epoch)")
        }
    }

    func testMultistepAndExponential() {
        let multistep = LearningRateSchedule(kind: .multistep(milestones: [2, 5], gamma: 0.1))
        let expected: [Double] = [1, 1, 0.1, 0.1, 0.1, 0.01, 0.01]
        for (epoch, lr) in expected.enumerated() {
            XCTAssertEqual(Double(multistep.learningRate(base: 1, epoch: epoch, globalStep: epoch, stepsPerEpoch: 1)), lr,
                           accuracy: 1e-7, "epoch \(epoch)")
        }
        let exponential = LearningRateSchedule(kind: .exponential(gamma: 0.9))
        for epoch in 0..<8 {
            XCTAssertEqual(Double(exponential.learningRate(base: 0.5, epoch: epoch, globalStep: 0, stepsPerEpoch: 1)),
                           0.5 * pow(0.9, Double(epoch)), accuracy: 1e-7, "epoch \(epoch)")
        }
    }

    func testCosineSchedule() {
        let schedule = LearningRateSchedule(kind: .cosine(tMax: 10, minimum: 0.001))
        // η_min + (lr₀ − η_min)(1 + cos(π e/T))/2: e = 0 → 0.1, e = 2 → 0.0905463, e = 5 → 0.0505, e = 10 → 0.001
        let table: [(Int, Double)] = [(0, 0.1), (2, 0.001 + 0.099 * (1 + cos(Double.pi / 5)) / 2), (5, 0.0505), (10, 0.001)]
        for (epoch, lr) in table {
            XCTAssertEqual(Double(schedule.learningRate(base: 0.1, epoch: epoch, globalStep: 0, stepsPerEpoch: 1)), lr,
                           accuracy: 1e-7, "epoch \(epoch)")
        }
        // Monotone decreasing over [0, T].
        let lrs = (0...10).map { schedule.learningRate(base: 0.1, epoch: $0, globalStep: 0, stepsPerEpoch: 1) }
        XCTAssertEqual(lrs, lrs.sorted(by: >))
    }

    /// lr₀·(f + (1 − f)·i/W) for step i < W, then the schedule from its own epoch 0.
    func testWarmupRisesLinearlyThenTheScheduleStarts() {
        let warmup = LearningRateSchedule(kind: .constant, warmupSteps: 4)
        let expected: [Double] = [0, 0.025, 0.05, 0.075, 0.1, 0.1]
        for (step, lr) in expected.enumerated() {
            XCTAssertEqual(Double(warmup.learningRate(base: 0.1, epoch: step / 3, globalStep: step, stepsPerEpoch: 3)), lr,
                           accuracy: 1e-8, "step \(step)")
        }
        let fromQuarter = LearningRateSchedule(kind: .constant, warmupSteps: 4, warmupStartFactor: 0.25)
        XCTAssertEqual(fromQuarter.learningRate(base: 0.1, epoch: 0, globalStep: 0, stepsPerEpoch: 3), 0.025)
        XCTAssertEqual(Double(fromQuarter.learningRate(base: 0.1, epoch: 0, globalStep: 2, stepsPerEpoch: 3)), 0.0625, accuracy: 1e-8)
        // Two warmup epochs of 5 steps, then step decay counts its epochs from the third.
        let decay = LearningRateSchedule(kind: .step(stepSize: 1, gamma: 0.5), warmupEpochs: 2)
        XCTAssertEqual(decay.warmupLength(stepsPerEpoch: 5), 10)
        XCTAssertEqual(Double(decay.learningRate(base: 0.1, epoch: 1, globalStep: 9, stepsPerEpoch: 5)), 0.09, accuracy: 1e-8)
        XCTAssertEqual(Double(decay.learningRate(base: 0.1, epoch: 2, globalStep: 10, stepsPerEpoch: 5)), 0.1, accuracy: 1e-8)
        XCTAssertEqual(Double(decay.learningRate(base: 0.1, epoch: 3, globalStep: 15, stepsPerEpoch: 5)), 0.05, accuracy: 1e-8)
        XCTAssertEqual(LearningRateSchedule().learningRate(base: 0.3, epoch: 7, globalStep: 99, stepsPerEpoch: 10), 0.3)
    }

    func testParsesTheSchedules() throws {
        let base = "data: {train: {format: moons, samples: 64, noise: 0.1}}\nmodel: {inputs: 2, layers: [{type: dense, units: 2}]}\n"
            + "optimizer: {type: sgd}\ntraining: {epochs: 8}\n"
        let parsed = { (schedule: String) in try TrainingConfig.parse(yaml: base + "schedule: " + schedule).schedule }
        XCTAssertEqual(try parsed("{type: multistep, milestones: [2, 5], gamma: 0.5}"),
                       LearningRateSchedule(kind: .multistep(milestones: [2, 5], gamma: 0.5)))
        XCTAssertEqual(try parsed("{type: multistep, milestones: 3}"), LearningRateSchedule(kind: .multistep(milestones: [3], gamma: 0.1)))
        XCTAssertEqual(try parsed("{type: exponential, gamma: 0.95, warmup_epochs: 2, warmup_start_factor: 0.1}"),
                       LearningRateSchedule(kind: .exponential(gamma: 0.95), warmupEpochs: 2, warmupStartFactor: 0.1))
        XCTAssertEqual(try parsed("{type: cosine, warmup_steps: 7}"), LearningRateSchedule(kind: .cosine(tMax: 8, minimum: 0), warmupSteps: 7))
        var cycle = LearningRateSchedule.OneCycle(epochs: 8)
        cycle.maxLR = 0.2
        cycle.cycleMomentum = false
        XCTAssertEqual(try parsed("{type: one_cycle, max_lr: 0.2, cycle_momentum: false}"), LearningRateSchedule(kind: .oneCycle(cycle)))
        let refused: [(String, String)] = [
            ("{type: step, gamma: 0}", "schedule.gamma: expected a number in (0, 1], got 0"),
            ("{type: exponential, gamma: -0.5}", "schedule.gamma"),
            ("{type: exponential}", "missing key 'schedule.gamma'"),
            ("{type: multistep, milestones: [5, 3]}", "schedule.milestones: milestones must increase, got 3 after 5"),
            ("{type: multistep, milestones: [2, 2]}", "milestones must increase"),
            ("{type: multistep, milestones: [0]}", "schedule.milestones: expected a list of epochs ≥ 1"),
            ("{type: multistep, milestones: []}", "at least one epoch"),
            ("{type: multistep}", "missing key 'schedule.milestones'"),
            ("{type: cosine, warmup_epochs: 8}", "schedule.warmup_epochs: a warmup of 8 epoch(s) leaves nothing of training.epochs 8"),
            ("{type: cosine, warmup_epochs: 2, warmup_steps: 5}", "give the warmup's length once"),
            ("{type: cosine, warmup_start_factor: 1.5}", "schedule.warmup_start_factor"),
            ("{type: warmup}", "schedule.warmup_steps: expected an integer ≥ 1 for type warmup"),
            ("{type: linear}", "'linear' is not one of constant, warmup, step, multistep, exponential, cosine, one_cycle, reduce_on_plateau"),
            ("{type: one_cycle, warmup_epochs: 1}", "one_cycle warms up by itself"),
            ("{type: one_cycle, pct_start: 1}", "schedule.pct_start: expected a number in (0, 1)"),
        ]
        for (schedule, message) in refused {
            XCTAssertThrowsError(try parsed(schedule), schedule) { error in
                XCTAssertTrue("\(error)".contains(message), "\(schedule): \(error)")
            }
        }
    }

    /// Each schedule's lr at every optimizer step of a short run, against torch.optim.lr_scheduler
    /// stepped as torch's examples do: per epoch, and a warmup as SequentialLR's LinearLR per step.
    /// With W a whole number of epochs, SequentialLR itself stepped per step (StepLR's and
    /// MultiStepLR's epochs given in steps) is the reference; otherwise a replay whose main
    /// scheduler starts at the milestone and steps at the ends of the epochs after it. Cosine
    /// stays within T_max: past it torch's climbs back up, ddp's holds η_min.
    func testMatchesTorchSchedulers() throws {
        let python = try InteropPython.require(["torch"])
        let script = """
            import json, torch
            from torch.optim import lr_scheduler as S
            S_PER_EPOCH, EPOCHS, LR = 3, 9, 0.1
            def optimizer():
                return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
            def per_epoch(make, warmup=0, start=0.25):
                o = optimizer(); lrs = []
                warm = S.LinearLR(o, start_factor=start, total_iters=warmup) if warmup else None
                main = None if warmup else make(o)
                for epoch in range(EPOCHS):
                    for i in range(S_PER_EPOCH):
                        step = epoch * S_PER_EPOCH + i
                        if warmup and step == warmup:
                            for g in o.param_groups: g['lr'] = LR; g['initial_lr'] = LR
                            main = make(o)
                        lrs.append(o.param_groups[0]['lr'])
                        o.step()
                        if warmup and step < warmup: warm.step()
                    if main is not None and (not warmup or epoch >= warmup // S_PER_EPOCH): main.step()
                return lrs
            def sequential(make_in_steps, warmup, start=0.25):
                o = optimizer(); lrs = []
                s = S.SequentialLR(o, [S.LinearLR(o, start_factor=start, total_iters=warmup), make_in_steps(o)], milestones=[warmup])
                for _ in range(EPOCHS * S_PER_EPOCH):
                    lrs.append(o.param_groups[0]['lr']); o.step(); s.step()
                return lrs
            cases = {
                'step': per_epoch(lambda o: S.StepLR(o, step_size=2, gamma=0.5)),
                'multistep': per_epoch(lambda o: S.MultiStepLR(o, milestones=[2, 5], gamma=0.1)),
                'exponential': per_epoch(lambda o: S.ExponentialLR(o, gamma=0.8)),
                'cosine': per_epoch(lambda o: S.CosineAnnealingLR(o, T_max=8, eta_min=0.001)),
                'warmup 6 + step, SequentialLR': sequential(lambda o: S.StepLR(o, step_size=2 * S_PER_EPOCH, gamma=0.5), 6),
                'warmup 6 + multistep, SequentialLR': sequential(lambda o: S.MultiStepLR(o, milestones=[S_PER_EPOCH, 4 * S_PER_EPOCH], gamma=0.1), 6),
                'warmup 5 + cosine': per_epoch(lambda o: S.CosineAnnealingLR(o, T_max=7, eta_min=0.001), warmup=5),
                'warmup 4 + exponential': per_epoch(lambda o: S.ExponentialLR(o, gamma=0.8), warmup=4, start=0.1),
            }
            print(json.dumps(cases))
            """
        let result = try runPython(python, ["-c", script])
        XCTAssertEqual(result.status, 0, result.output)
        let torch = try JSONDecoder().decode([String: [Double]].self, from: Data(result.output.utf8))
        let schedules: [String: LearningRateSchedule] = [
            "step": .init(kind: .step(stepSize: 2, gamma: 0.5)),
            "multistep": .init(kind: .multistep(milestones: [2, 5], gamma: 0.1)),
            "exponential": .init(kind: .exponential(gamma: 0.8)),
            "cosine": .init(kind: .cosine(tMax: 8, minimum: 0.001)),
            "warmup 6 + step, SequentialLR": .init(kind: .step(stepSize: 2, gamma: 0.5), warmupEpochs: 2, warmupStartFactor: 0.25),
            "warmup 6 + multistep, SequentialLR": .init(kind: .multistep(milestones: [1, 4], gamma: 0.1), warmupSteps: 6, warmupStartFactor: 0.25),
            "warmup 5 + cosine": .init(kind: .cosine(tMax: 7, minimum: 0.001), warmupSteps: 5, warmupStartFactor: 0.25),
            "warmup 4 + exponential": .init(kind: .exponential(gamma: 0.8), warmupSteps: 4, warmupStartFactor: 0.1),
        ]
        XCTAssertEqual(Set(torch.keys), Set(schedules.keys))
        for (name, schedule) in schedules {
            let expected = try XCTUnwrap(torch[name])
            XCTAssertEqual(expected.count, 27, name)
            for (step, lr) in expected.enumerated() {
                let ours = Double(schedule.learningRate(base: 0.1, epoch: step / 3, globalStep: step, stepsPerEpoch: 3))
                XCTAssertEqual(ours, lr, accuracy: 1e-6 * lr, "\(name), step \(step)")   // float32's lr
            }
        }
    }

    /// one_cycle by hand over 10 steps, pct_start 0.3: the rise ends at step 0.3·10 − 1 = 2;
    /// lr max_lr/25 → max_lr → max_lr/25/10⁴, momentum 0.95 → 0.85 → 0.95; half-way down at
    /// step 2 + 3.5 = 5.5 the cosine is at its middle.
    func testOneCycleByHand() {
        var cycle = LearningRateSchedule.OneCycle(epochs: 2)
        cycle.maxLR = 1
        let schedule = LearningRateSchedule(kind: .oneCycle(cycle))
        let lr = { (step: Int) in Double(schedule.learningRate(base: 0.5, epoch: step / 5, globalStep: step, stepsPerEpoch: 5)) }
        let momentum = { (step: Int) in Double(schedule.momentum(globalStep: step, stepsPerEpoch: 5) ?? .nan) }
        XCTAssertEqual(lr(0), 0.04, accuracy: 1e-7)
        XCTAssertEqual(momentum(0), 0.95, accuracy: 1e-7)
        XCTAssertEqual(lr(1), 0.04 + 0.96 / 2, accuracy: 1e-7)
        XCTAssertEqual(lr(2), 1, accuracy: 1e-7)
        XCTAssertEqual(momentum(2), 0.85, accuracy: 1e-7)
        XCTAssertEqual(lr(9), 4e-6, accuracy: 1e-10)
        XCTAssertEqual(momentum(9), 0.95, accuracy: 1e-7)
        XCTAssertEqual(LearningRateSchedule(kind: .oneCycle(LearningRateSchedule.OneCycle(epochs: 2)))
            .learningRate(base: 0.5, epoch: 0, globalStep: 2, stepsPerEpoch: 5), 0.5, accuracy: 1e-7, "max_lr defaults to the optimizer's lr")
    }

    /// one_cycle against torch's OneCycleLR stepped per optimizer step: the lr and momentum of
    /// every step (SGD's momentum), and Adam trained through it, β₁ cycled with its bias
    /// correction, against torch.optim.Adam under OneCycleLR.
    func testOneCycleMatchesTorch() throws {
        let python = try InteropPython.require(["torch"])
        var random = TestRandom(seed: 9)
        let network = try makeNetwork(inputs: 2, [Layers.dense(2)])
        let start = random.array(network.parameters.count, -1, 1)
        let gradients = (0..<15).map { _ in random.array(network.parameters.count, -1, 1) }
        let script = """
            import json, sys, torch
            start, gradients = json.loads(sys.argv[1]), json.loads(sys.argv[2])
            p = torch.nn.Parameter(torch.zeros(1))
            o = torch.optim.SGD([p], lr=0.1, momentum=0.9)
            s = torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, epochs=3, steps_per_epoch=5, pct_start=0.3)
            lrs, momenta = [], []
            for _ in range(15):
                lrs.append(o.param_groups[0]['lr']); momenta.append(o.param_groups[0]['momentum']); o.step(); s.step()
            q = torch.nn.Parameter(torch.tensor(start, dtype=torch.float32))
            a = torch.optim.Adam([q], lr=0.01)
            s = torch.optim.lr_scheduler.OneCycleLR(a, max_lr=0.01, total_steps=15, div_factor=10, final_div_factor=100)
            for g in gradients:
                q.grad = torch.tensor(g, dtype=torch.float32); a.step(); s.step()
            print(json.dumps({"lr": lrs, "momentum": momenta, "adam": q.detach().tolist()}))
            """
        let json = { (value: Any) in String(decoding: try JSONSerialization.data(withJSONObject: value), as: UTF8.self) }
        let result = try runPython(python, ["-c", script, try json(start.map(Double.init)), try json(gradients.map { $0.map(Double.init) })])
        XCTAssertEqual(result.status, 0, result.output)
        let torch = try JSONDecoder().decode([String: [Double]].self, from: Data(result.output.utf8))
        var cycle = LearningRateSchedule.OneCycle(epochs: 3)
        cycle.maxLR = 0.1
        let sgd = LearningRateSchedule(kind: .oneCycle(cycle))
        for step in 0..<15 {
            let lr = try XCTUnwrap(torch["lr"])[step], momentum = try XCTUnwrap(torch["momentum"])[step]
            XCTAssertEqual(Double(sgd.learningRate(base: 0.5, epoch: step / 5, globalStep: step, stepsPerEpoch: 5)), lr,
                           accuracy: 1e-6 * lr, "lr, step \(step)")
            XCTAssertEqual(Double(try XCTUnwrap(sgd.momentum(globalStep: step, stepsPerEpoch: 5))), momentum, accuracy: 1e-7, "momentum, step \(step)")
        }
        var adamCycle = LearningRateSchedule.OneCycle(epochs: 3)
        adamCycle.divFactor = 10
        adamCycle.finalDivFactor = 100
        let adamSchedule = LearningRateSchedule(kind: .oneCycle(adamCycle))
        store(start, into: network.parameters)
        let adam = Optimizer(config: OptimizerConfig(kind: .adam, learningRate: 0.01), layout: network.layout)
        for (step, g) in gradients.enumerated() {
            store(g, into: network.gradients)
            adam.scheduledMomentum = adamSchedule.momentum(globalStep: step, stepsPerEpoch: 5)
            adam.apply(parameters: network.parameters, gradients: network.gradients,
                       lr: adamSchedule.learningRate(base: 0.01, epoch: step / 5, globalStep: step, stepsPerEpoch: 5))
        }
        for (ours, theirs) in zip(network.parameters, try XCTUnwrap(torch["adam"])) {
            XCTAssertEqual(Double(ours), theirs, accuracy: 1e-6)
        }
        XCTAssertGreaterThan(zip(network.parameters, start).map { abs($0 - $1) }.max() ?? 0, 1e-3, "it moved")
        XCTAssertNil(LearningRateSchedule(kind: .cosine(tMax: 3, minimum: 0)).momentum(globalStep: 2, stepsPerEpoch: 5))
    }
}
