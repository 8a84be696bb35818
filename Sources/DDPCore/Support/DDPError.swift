/// The one error type the trainer throws. Its message is what the user reads: it names the file,
/// config key or rank involved and says what was expected. The CLI prints it and exits non-zero.
public struct DDPError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// A config key is missing, misspelled or has a value of the wrong type or range.
        case config
        /// A data file is missing, truncated or malformed.
        case data
        /// A weights or checkpoint file is missing, corrupt or does not fit the model.
        case weights
        /// Training itself failed (a non-finite loss, say).
        case training
        /// The MPI layer reported an error.
        case communication
        /// Reading or writing a file failed.
        case io
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// An error every rank reached at the same point (through an agreement collective, or because
/// each rank checked the same bytes), so the job ends without MPI_Abort: the rank with
/// `printHere` prints it once, every rank finalizes MPI and exits 1.
public struct AgreedFailure: Error, Sendable {
    public let error: DDPError
    public let printHere: Bool

    public init(error: DDPError, printHere: Bool) {
        self.error = error
        self.printHere = printHere
    }
}
