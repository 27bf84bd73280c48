"""Step 6 (f): every work the report's text cites, plus its dataset and its software.

The reference list lives here, in the package (citation as the text writes it -> the entry), so
a report written anywhere can list what it cites; (f) lists exactly the citations that occur in
the other sections, then the dataset's source and the software the study ran on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gradprobe.analysis.document import Block, Context, Section, bullets

WORKS: dict[str, str] = {
    "Simonyan & Zisserman 2015": "K. Simonyan, A. Zisserman. Very Deep Convolutional Networks "
    "for Large-Scale Image Recognition. ICLR 2015. arXiv:1409.1556.",
    "He et al. 2016a": "K. He, X. Zhang, S. Ren, J. Sun. Deep Residual Learning for Image "
    "Recognition. CVPR 2016. arXiv:1512.03385.",
    "He et al. 2016b": "K. He, X. Zhang, S. Ren, J. Sun. Identity Mappings in Deep Residual "
    "Networks. ECCV 2016. arXiv:1603.05027.",
    "He et al. 2015": "K. He, X. Zhang, S. Ren, J. Sun. Delving Deep into Rectifiers. ICCV "
    "2015. arXiv:1502.01852.",
    "Hochreiter 1991": "S. Hochreiter. Untersuchungen zu dynamischen neuronalen Netzen. "
    "Diploma thesis, TU München, 1991.",
    "Bengio et al. 1994": "Y. Bengio, P. Simard, P. Frasconi. Learning long-term dependencies "
    "with gradient descent is difficult. IEEE Trans. Neural Networks 5(2), 1994.",
    "Glorot & Bengio 2010": "X. Glorot, Y. Bengio. Understanding the difficulty of training "
    "deep feedforward neural networks. AISTATS 2010.",
    "Poole et al. 2016": "B. Poole, S. Lahiri, M. Raghu, J. Sohl-Dickstein, S. Ganguli. "
    "Exponential expressivity in deep neural networks through transient chaos. NeurIPS 2016. "
    "arXiv:1606.05340.",
    "Schoenholz et al. 2017": "S. S. Schoenholz, J. Gilmer, S. Ganguli, J. Sohl-Dickstein. "
    "Deep Information Propagation. ICLR 2017. arXiv:1611.01232.",
    "Yang & Schoenholz 2017": "G. Yang, S. S. Schoenholz. Mean Field Residual Networks: On the "
    "Edge of Chaos. NeurIPS 2017. arXiv:1712.08969.",
    "Yang et al. 2019": "G. Yang, J. Pennington, V. Rao, J. Sohl-Dickstein, S. S. Schoenholz. "
    "A Mean Field Theory of Batch Normalization. ICLR 2019. arXiv:1902.08129.",
    "Ioffe & Szegedy 2015": "S. Ioffe, C. Szegedy. Batch Normalization: Accelerating Deep "
    "Network Training by Reducing Internal Covariate Shift. ICML 2015. arXiv:1502.03167.",
    "Santurkar et al. 2018": "S. Santurkar, D. Tsipras, A. Ilyas, A. Madry. How Does Batch "
    "Normalization Help Optimization? NeurIPS 2018. arXiv:1805.11604.",
    "Veit et al. 2016": "A. Veit, M. Wilber, S. Belongie. Residual Networks Behave Like "
    "Ensembles of Relatively Shallow Networks. NeurIPS 2016. arXiv:1605.06431.",
    "Balduzzi et al. 2017": "D. Balduzzi, M. Frean, L. Leary, J. P. Lewis, K. W.-D. Ma, B. "
    "McWilliams. The Shattered Gradients Problem. ICML 2017. arXiv:1702.08591.",
    "Hanin 2018": "B. Hanin. Which Neural Net Architectures Give Rise to Exploding and "
    "Vanishing Gradients? NeurIPS 2018. arXiv:1801.03744.",
    "Lu et al. 2020": "L. Lu, Y. Shin, Y. Su, G. E. Karniadakis. Dying ReLU and Initialization: "
    "Theory and Numerical Examples. Commun. Comput. Phys. 28, 2020. arXiv:1903.06733.",
}

DATASETS: dict[str, tuple[str, ...]] = {
    "digits": ("E. Alpaydin, C. Kaynak. Optical Recognition of Handwritten Digits. UCI Machine "
               "Learning Repository, 1998 (dataset; loaded through scikit-learn's load_digits).",
               "F. Pedregosa et al. Scikit-learn: Machine Learning in Python. JMLR 12, 2011."),
    "fashion-mnist": ("H. Xiao, K. Rasul, R. Vollgraf. Fashion-MNIST: a Novel Image Dataset for "
                      "Benchmarking Machine Learning Algorithms. arXiv:1708.07747, 2017.",),
    "cifar10": ("A. Krizhevsky. Learning Multiple Layers of Features from Tiny Images. Technical "
                "report, University of Toronto, 2009.",),
}

SOFTWARE = (
    "A. Paszke et al. PyTorch: An Imperative Style, High-Performance Deep Learning Library. "
    "NeurIPS 2019. arXiv:1912.01703.",
    "C. R. Harris et al. Array programming with NumPy. Nature 585, 2020.",
    "W. McKinney. Data Structures for Statistical Computing in Python. SciPy 2010 (pandas).",
    "P. Virtanen et al. SciPy 1.0: Fundamental Algorithms for Scientific Computing in Python. "
    "Nature Methods 17, 2020.",
    "J. D. Hunter. Matplotlib: A 2D Graphics Environment. Computing in Science & Engineering "
    "9(3), 2007.",
    "gradprobe, this package: the probe, the trainer and this report.",
)

# "Poole et al. 2016", "Glorot & Bengio 2010", "He et al. (2016a)", "Hochreiter 1991"
CITATION = re.compile(r"\b([A-Z][a-z]+(?: et al\.| & [A-Z][a-z]+)?) \(?(\d{4}[ab]?)\)?")


def cited(texts: Iterable[str]) -> list[str]:
    """The keys of WORKS cited in `texts`, in first-cited order; "He et al. 2016" alone means
    the residual-learning paper (2016a)."""
    found: list[str] = []
    for text in texts:
        for author, year in CITATION.findall(text):
            key = f"{author} {year}"
            if key not in WORKS and f"{key}a" in WORKS:
                key = f"{key}a"
            if key in WORKS and key not in found:
                found.append(key)
    return found


def section_texts(sections: Iterable[Section]) -> list[str]:
    texts = []
    for section in sections:
        for block in section.blocks:
            texts += [block.text, *block.items, *(cell for row in block.rows for cell in row)]
    return texts


def section(context: Context, others: Iterable[Section], dataset: str) -> Section:
    works = [WORKS[key] for key in cited(section_texts(others))]
    data = DATASETS.get(dataset, (f"The dataset: {dataset}.",))
    blocks: list[Block] = [bullets(works), bullets([*data, *SOFTWARE])]
    return Section("references", "(f) References", tuple(blocks), main=False, level=3)
