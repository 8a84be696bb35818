/// A count with its noun in the right number: "1 rank", "2 ranks", "1 step", "0 epochs".
public func counted(_ count: Int, _ singular: String, _ plural: String? = nil) -> String {
    "\(count) \(count == 1 ? singular : plural ?? singular + "s")"
}
