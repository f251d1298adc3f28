//! Which datasets exist, their files, checksums and public mirrors.

use std::fmt;
use std::str::FromStr;

use crate::DataError;

/// A file of a dataset as published (a gzipped IDX file, or CIFAR-10's archive), with its SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFile {
    /// File name, e.g. `train-images-idx3-ubyte.gz`.
    pub name: &'static str,
    /// Lower-case hex SHA-256 of the gzipped file.
    pub sha256: &'static str,
}

/// A built-in dataset: MNIST and Fashion-MNIST (four IDX files each: 28×28 grey images, labels 0–9) and CIFAR-10
/// (one archive of binary batches: 32×32 colour images, ten classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "String")]
pub enum Dataset {
    /// LeCun et al.'s handwritten digits.
    Mnist,
    /// Zalando's Fashion-MNIST, a drop-in replacement with clothing items.
    FashionMnist,
    /// Krizhevsky's CIFAR-10, the binary version (`cifar-10-binary.tar.gz`).
    Cifar10,
}

/// CIFAR-10's published archive, the binary version, and its SHA-256 (the MD5 the dataset's page gives is
/// `c32a1d4ab5d03f1284b67883e8d87530`).
const CIFAR10_ARCHIVE: DataFile = DataFile {
    name: "cifar-10-binary.tar.gz",
    sha256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
};

/// The four file names every IDX dataset uses.
pub const FILE_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

impl Dataset {
    /// Every dataset, for `--dataset all`.
    pub const ALL: [Dataset; 3] = [Dataset::Mnist, Dataset::FashionMnist, Dataset::Cifar10];

    /// The datasets of four IDX files (MNIST's layout), which the tests read.
    pub const IDX: [Dataset; 2] = [Dataset::Mnist, Dataset::FashionMnist];

    /// Whether the dataset is four IDX files of 28×28 grey images (MNIST's layout).
    pub fn is_idx(self) -> bool {
        Dataset::IDX.contains(&self)
    }

    /// An example's `[channels, height, width]`.
    pub fn shape(self) -> [usize; 3] {
        match self {
            Dataset::Mnist | Dataset::FashionMnist => [1, 28, 28],
            Dataset::Cifar10 => [3, 32, 32],
        }
    }

    /// The name used on the command line, in presets and as the folder under the data directory.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Mnist => "mnist",
            Dataset::FashionMnist => "fashion-mnist",
            Dataset::Cifar10 => "cifar10",
        }
    }

    /// What each label means, by label: the digits, Fashion-MNIST's ten garment classes or CIFAR-10's ten (as its
    /// archive's `batches.meta.txt` names them; the loader reads that file).
    pub fn class_names(self) -> [&'static str; 10] {
        match self {
            Dataset::Mnist => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            Dataset::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
            Dataset::Cifar10 => [
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ],
        }
    }

    /// The files with their checksums: an IDX dataset's four in [`FILE_NAMES`] order, CIFAR-10's archive.
    pub fn files(self) -> Vec<DataFile> {
        let sums = match self {
            Dataset::Mnist => [
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ],
            Dataset::FashionMnist => [
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ],
            Dataset::Cifar10 => return vec![CIFAR10_ARCHIVE],
        };
        (0..4)
            .map(|i| DataFile {
                name: FILE_NAMES[i],
                sha256: sums[i],
            })
            .collect()
    }

    /// The files the test split needs: an IDX dataset's two `t10k` files, CIFAR-10's one archive.
    pub fn test_files(self) -> Vec<DataFile> {
        let mut files = self.files();
        if self.is_idx() {
            files.drain(..2);
        }
        files
    }

    /// Public mirrors, tried in order. Each holds the files directly: `<mirror><file name>`.
    pub fn builtin_mirrors(self) -> &'static [&'static str] {
        match self {
            Dataset::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ],
            Dataset::FashionMnist => {
                &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
            }
            Dataset::Cifar10 => &["https://www.cs.toronto.edu/~kriz/"],
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dataset {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        Dataset::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| DataError::UnknownDataset(s.to_string()))
    }
}

impl TryFrom<String> for Dataset {
    type Error = DataError;
    fn try_from(s: String) -> Result<Self, DataError> {
        s.parse()
    }
}
