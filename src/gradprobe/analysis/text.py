"""The report's fixed prose: the theory paragraphs of Step 6 (b)-(d) and the references.

Only explanations that hold whatever the data say live here; every sentence with a number is
built in `findings.py` and `answers.py` from the records. Sources are in /shared/REFERENCES.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    """One element of the report; the templates render each kind in their own markup.

    Kinds: "p" (text), "formula" (text), "h3" (text), "list" (items), "table" (headers, rows),
    "figure" (path relative to the report, data_uri for the HTML, alt, text as caption).
    All strings are plain text: the templates escape them.
    """

    kind: str
    text: str = ""
    items: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    path: str = ""
    data_uri: str = ""
    alt: str = ""


def p(text: str) -> Block:
    return Block("p", text=text)


def formula(text: str) -> Block:
    return Block("formula", text=text)


def h3(text: str) -> Block:
    return Block("h3", text=text)


def bullets(items: list[str] | tuple[str, ...]) -> Block:
    return Block("list", items=tuple(items))


def table(headers: list[str] | tuple[str, ...], rows: list[list[str]] | list[tuple[str, ...]]
          ) -> Block:
    return Block("table", headers=tuple(headers), rows=tuple(tuple(row) for row in rows))


WHY_VANISH = (
    p("By the chain rule, the gradient of the loss L with respect to the weights W_l of layer l "
      "is the gradient at the output multiplied by the Jacobian of every layer above l:"),
    formula("∂L/∂W_l = ∂L/∂x_L · (∂x_L/∂x_{L-1}) · (∂x_{L-1}/∂x_{L-2}) ⋯ (∂x_{l+1}/∂x_l) · "
            "∂x_l/∂W_l"),
    p("Each factor ∂x_{k+1}/∂x_k = diag(σ'(z_k)) · W_k combines the activation's slope and the "
      "layer's weights. When the typical gain of these factors is below 1, the product shrinks "
      "geometrically with the number of layers between l and the output, so the layers nearest "
      "the input learn slowest: this is the vanishing-gradient problem (Hochreiter 1991; "
      "Bengio et al. 1994). Saturating activations make the factors small (the sigmoid's slope "
      "is at most 1/4, and both sigmoid and tanh flatten out for large inputs), and so do weights "
      "initialised too small; a gain above 1 makes the product explode instead (Glorot & Bengio "
      "2010). He (Kaiming) initialisation, Var(W) = 2 / fan_in, keeps the gain of a ReLU layer "
      "near 1 at initialisation (He et al. 2015), which is why a plain ReLU net with He init can "
      "train without visible vanishing, while the same net with a saturating activation or a "
      "smaller init does not."),
)

WHY_RESIDUAL = (
    p("A residual block adds its input to the output of its branch, x_{l+1} = x_l + F(x_l), so "
      "its Jacobian contains the identity:"),
    formula("∂x_{l+1}/∂x_l = I + ∂F/∂x_l,   and unrolled:   "
            "∂L/∂x_l = ∂L/∂x_L · (I + ∂/∂x_l Σ_{i=l}^{L-1} F(x_i))"),
    p("The gradient reaching a shallow block therefore contains ∂L/∂x_L itself, carried by the "
      "identity path without passing through any weight layer, so it cannot vanish however small "
      "the branches' own factors are (He et al. 2016b). Seen differently, a residual net is an "
      "ensemble of paths of many lengths, and most of the gradient flows through the short ones "
      "(Veit et al. 2016); the gradients of deep plain nets also lose their spatial structure "
      "('shattered gradients') where residual nets keep it (Balduzzi et al. 2017)."),
)

WHAT_BATCH_NORM_DOES = (
    p("Batch normalisation standardises each channel over the mini-batch, then scales and shifts "
      "it with learned parameters (Ioffe & Szegedy 2015). This keeps each layer's input in a "
      "range where the activation is not saturated, and it makes the layer invariant to the "
      "scale of the weights that feed it:"),
    formula("BN((a·W) u) = BN(W u)   ⇒   ∂L/∂u unchanged,   ∂L/∂(a·W) = (1/a) ∂L/∂W"),
    p("so the gradient passed down to earlier layers does not depend on the weight scale, and "
      "large weights receive proportionally smaller gradients, which stabilises the effective "
      "step size. Its benefit to optimisation is better explained by a smoother loss landscape "
      "than by reduced internal covariate shift (Santurkar et al. 2018). It is not a guarantee of "
      "healthy gradients: in a plain (non-residual) net with batch norm, mean-field theory shows "
      "gradients growing towards the input with depth at initialisation (Yang et al. 2019), and "
      "He et al. (2016a) report that their batch-normalised plain nets did not have vanishing "
      "gradients, yet still trained worse than residual ones at larger depth (degradation)."),
)

REFERENCES = (
    "K. Simonyan, A. Zisserman. Very Deep Convolutional Networks for Large-Scale Image "
    "Recognition. ICLR 2015. arXiv:1409.1556.",
    "K. He, X. Zhang, S. Ren, J. Sun. Deep Residual Learning for Image Recognition. CVPR 2016 "
    "(He et al. 2016a). arXiv:1512.03385.",
    "K. He, X. Zhang, S. Ren, J. Sun. Identity Mappings in Deep Residual Networks. ECCV 2016 "
    "(He et al. 2016b). arXiv:1603.05027.",
    "K. He, X. Zhang, S. Ren, J. Sun. Delving Deep into Rectifiers: Surpassing Human-Level "
    "Performance on ImageNet Classification. ICCV 2015. arXiv:1502.01852.",
    "X. Glorot, Y. Bengio. Understanding the difficulty of training deep feedforward neural "
    "networks. AISTATS 2010.",
    "S. Hochreiter. Untersuchungen zu dynamischen neuronalen Netzen. Diploma thesis, TU München, "
    "1991. Y. Bengio, P. Simard, P. Frasconi. Learning long-term dependencies with gradient "
    "descent is difficult. IEEE Trans. Neural Networks 5(2), 1994.",
    "S. Ioffe, C. Szegedy. Batch Normalization: Accelerating Deep Network Training by Reducing "
    "Internal Covariate Shift. ICML 2015. arXiv:1502.03167.",
    "S. Santurkar, D. Tsipras, A. Ilyas, A. Madry. How Does Batch Normalization Help "
    "Optimization? NeurIPS 2018. arXiv:1805.11604.",
    "G. Yang, J. Pennington, V. Rao, J. Sohl-Dickstein, S. S. Schoenholz. A Mean Field Theory of "
    "Batch Normalization. ICLR 2019. arXiv:1902.08129.",
    "A. Veit, M. Wilber, S. Belongie. Residual Networks Behave Like Ensembles of Relatively "
    "Shallow Networks. NeurIPS 2016. arXiv:1605.06431.",
    "D. Balduzzi, M. Frean, L. Leary, J. P. Lewis, K. W.-D. Ma, B. McWilliams. The Shattered "
    "Gradients Problem: If resnets are the answer, then what is the question? ICML 2017. "
    "arXiv:1702.08591.",
    "A. Paszke et al. PyTorch: An Imperative Style, High-Performance Deep Learning Library. "
    "NeurIPS 2019. arXiv:1912.01703.",
    "J. D. Hunter. Matplotlib: A 2D Graphics Environment. Computing in Science & Engineering "
    "9(3), 2007.",
    "W. McKinney. Data Structures for Statistical Computing in Python. Proc. 9th Python in "
    "Science Conference (SciPy), 2010. (pandas)",
    "C. R. Harris et al. Array programming with NumPy. Nature 585, 2020.",
)

# Libraries whose versions the report lists (the analysis itself uses these).
REPORT_LIBRARIES = ("matplotlib", "pandas", "numpy", "pyarrow", "jinja2")
