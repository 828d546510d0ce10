//! Full MNIST from `$MNIST_DIR` (CI sets it to the shared copy); skipped, with a
//! message, when the variable is not set, except under `CI=true`, where it fails.

use mnist_data::testing::full_mnist_dir;
use mnist_data::Source;

#[test]
fn full_mnist_has_the_published_counts() {
    let Some(dir) = full_mnist_dir("full_mnist_has_the_published_counts") else {
        return;
    };
    let splits = Source::Dir(dir).load().unwrap();
    assert_eq!(splits.train.len(), 60_000);
    assert_eq!(splits.test.len(), 10_000);
    assert_eq!(
        splits.train.class_counts(),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        splits.test.class_counts(),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // The fixtures are the first 50 test images of each class, in order.
    let fixtures = Source::Fixtures.load().unwrap();
    let indices = splits.test.balanced_indices(50).unwrap();
    assert_eq!(fixtures.test, splits.test.select(&indices).unwrap());
}
