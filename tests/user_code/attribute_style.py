"""Attribute style: self.W, self.b with self.dW, self.db; backward(dout) returns dx."""

import numpy as np


class Dense:
    def __init__(self, n_in, n_out):
        rng = np.random.default_rng(1)
        self.W = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        self.b = np.zeros(n_out) + 0.1
        self.dW = None
        self.db = None

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


class DenseForgetsToStore(Dense):
    """Computes dW but keeps it in a local variable."""

    def backward(self, dout):
        dW = self.x.T @ dout  # noqa: F841 - the mistake under test
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


class DenseTransposed(Dense):
    """dW with the factors the wrong way round (shape happens to fit: square W)."""

    def backward(self, dout):
        self.dW = dout.T @ self.x
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


class Sigmoid:
    def forward(self, z):
        self.out = 1 / (1 + np.exp(-z))
        return self.out

    def backward(self, dout):
        return dout * self.out * (1 - self.out)


class SigmoidOutputOnly(Sigmoid):
    """Multiplies by the activation instead of its derivative."""

    def backward(self, dout):
        return dout * self.out


class ReLUTimesOutput:
    def forward(self, z):
        self.z = z
        return np.maximum(z, 0)

    def backward(self, dout):
        return dout * np.maximum(self.z, 0)


class Tanh:
    def forward(self, x):
        self.a = np.tanh(x)
        return self.a

    def backprop(self, grad):
        return grad * (1 - self.a ** 2)


class LeakyReLU:
    def __init__(self, slope=0.1):
        self.slope = slope

    def forward(self, x):
        self.mask = x > 0
        return np.where(self.mask, x, self.slope * x)

    def back(self, grad):
        self.dx = -np.where(self.mask, grad, self.slope * grad)


class ReLU6:
    """Kinks at 0 and at 6."""

    def forward(self, x):
        self.x = x
        return np.clip(x, 0.0, 6.0)

    def backward(self, dout):
        return dout * ((self.x > 0) & (self.x < 6))


class ReLU6ForgetsTheTop(ReLU6):
    """Passes gradients above 6 as if it were a plain ReLU."""

    def backward(self, dout):
        return dout * (self.x > 0)


class HardTanh:
    """Kinks at -1 and 1."""

    def forward(self, x):
        self.x = x
        return np.clip(x, -1.0, 1.0)

    def backward(self, dout):
        return dout * (np.abs(self.x) < 1)


class Softmax:
    """A softmax whose method is called backwards and which takes the input again."""

    def forward(self, z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def backwards(self, grad, z):
        a = self.forward(z)
        return a * (grad - (grad * a).sum(axis=1, keepdims=True))


class SoftmaxAtLogits(Softmax):
    """The Jacobian formula applied to the logits z instead of the output a."""

    def backwards(self, grad, z):
        return z * (grad - (grad * z).sum(axis=1, keepdims=True))


class SoftmaxNoKeepdims(Softmax):
    """The row sum without keepdims: right for one sample, wrong for a batch."""

    def forward(self, z):
        self.a = super().forward(z)
        return self.a

    def backwards(self, grad, z):
        return self.a * (grad - (grad * self.a).sum(axis=1))


class SoftmaxJacobians(SoftmaxNoKeepdims):
    """Returns the Jacobian of every sample instead of applying it."""

    def backwards(self, grad, z):
        a = self.a
        return np.einsum("bi,ij->bij", a, np.eye(a.shape[1])) - np.einsum("bi,bj->bij", a, a)


class SoftmaxDiagonal(SoftmaxNoKeepdims):
    """Only the element-wise part a(1 - a)."""

    def backwards(self, grad, z):
        return grad * self.a * (1 - self.a)


class Crashes(Dense):
    """A typo in backward: the input gradient uses a name that is a method."""

    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dout @ self.forward.T


class Propagates:
    """Methods no convention knows."""

    def __init__(self):
        self.W = np.ones((3, 2))

    def propagate(self, x):
        return x @ self.W

    def backpropagate(self, g):
        return g @ self.W.T


class SoftmaxForwardNoKeepdims:
    """The row sum of the forward without keepdims; the backward is right."""

    def forward(self, z):
        e = np.exp(z)
        self.a = e / e.sum(axis=1)
        return self.a

    def backward(self, grad):
        return self.a * (grad - (grad * self.a).sum(axis=1, keepdims=True))


class DenseInputGradientTransposed(Dense):
    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return self.W @ dout.T


class DenseBiasKeepdims(Dense):
    """db kept as (1, n_out) for a bias of shape (n_out,): the same numbers, not a bug."""

    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = np.sum(dout, axis=0, keepdims=True)
        return dout @ self.W.T


class AffineCache:
    """forward returns (out, cache); backward(dout, cache) returns dx, dW, db."""

    def __init__(self, n_in, n_out):
        rng = np.random.default_rng(5)
        self.W = rng.standard_normal((n_in, n_out))
        self.b = rng.standard_normal(n_out)

    def forward(self, x):
        out = x @ self.W + self.b
        return out, (x, self.W)

    def backward(self, dout, cache):
        x, W = cache
        return dout @ W.T, x.T @ dout, dout.sum(axis=0)


class BatchNorm:
    """Batch statistics in training mode: every output row depends on every input row."""

    def __init__(self, n):
        self.gamma = np.linspace(0.5, 1.5, n)
        self.beta = np.full(n, 0.1)
        self.eps = 1e-5

    def forward(self, x):
        self.inv_std = 1 / np.sqrt(x.var(axis=0) + self.eps)
        self.xhat = (x - x.mean(axis=0)) * self.inv_std
        return self.gamma * self.xhat + self.beta

    def backward(self, dout):
        self.dgamma = (dout * self.xhat).sum(axis=0)
        self.dbeta = dout.sum(axis=0)
        dxhat = dout * self.gamma
        return self.inv_std * (dxhat - dxhat.mean(axis=0)
                               - self.xhat * (dxhat * self.xhat).mean(axis=0))


class BatchNormAsIfPerRow(BatchNorm):
    """Forgets that the mean and variance depend on x: dx = dxhat / std."""

    def backward(self, dout):
        super().backward(dout)
        return dout * self.gamma * self.inv_std
