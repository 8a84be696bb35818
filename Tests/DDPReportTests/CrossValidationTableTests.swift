import XCTest
@testable import DDPReport

/// The statistics `ddp cv` and `ddp compare --repeats` print.
final class CrossValidationTableTests: XCTestCase {
    func testMeanAndPopulationDeviationAsNumPy() throws {
        // np.mean([1, 2, 3, 4]) = 2.5, np.std([1, 2, 3, 4]) = sqrt(1.25).
        let summary = try XCTUnwrap(MeanAndDeviation([1, 2, 3, 4, nil, .infinity]))
        XCTAssertEqual(summary.mean, 2.5)
        XCTAssertEqual(summary.std, 1.25.squareRoot(), accuracy: 1e-15)
        XCTAssertEqual(summary.count, 4)
        XCTAssertNil(MeanAndDeviation([nil]))
    }
}
