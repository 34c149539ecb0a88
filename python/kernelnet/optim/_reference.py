"""Reference optimizer updates written with tensor ops: the same arguments and arithmetic as the
fused kernels (csrc/cpu/optim.cpp), one tensor at a time. Used where a backend has no fused
kernel yet (e.g. a CUDA build without optim kernels) and by the tests (KERNELNET_OPTIM=reference)
as an independent check of the native code."""
import math


def _eff_grad(g, p, maximize, wd):
    if maximize:
        g = -g
    if wd != 0.0:
        g = g + p * wd
    return g


def sgd_step(params, grads, bufs, buf_init, sizes, lr, momentum, dampening, weight_decay, nesterov, maximize):
    for i, (p, g) in enumerate(zip(params, grads)):
        d = _eff_grad(g, p, maximize, weight_decay)
        if momentum != 0.0:
            b = d if buf_init[i] else bufs[i] * momentum + d * (1.0 - dampening)
            bufs[i].copy_(b)
            d = d + b * momentum if nesterov else b
        p.copy_(p - d * lr)


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, sizes, steps, lr, beta1, beta2, eps,
              weight_decay, decoupled, amsgrad, maximize):
    for i, (p, g) in enumerate(zip(params, grads)):
        bc1 = 1.0 - beta1 ** steps[i]
        bc2_sqrt = math.sqrt(1.0 - beta2 ** steps[i])
        pv = p * (1.0 - lr * weight_decay) if decoupled else p
        gv = _eff_grad(g, pv, maximize, 0.0 if decoupled else weight_decay)
        m = exp_avgs[i] + (gv - exp_avgs[i]) * (1.0 - beta1)
        v = exp_avg_sqs[i] * beta2 + gv * gv * (1.0 - beta2)
        exp_avgs[i].copy_(m)
        exp_avg_sqs[i].copy_(v)
        if amsgrad:
            v = max_exp_avg_sqs[i].maximum(v)
            max_exp_avg_sqs[i].copy_(v)
        denom = v.sqrt() / bc2_sqrt + eps
        p.copy_(pv - (m / denom) * (lr / bc1))


def rmsprop_step(params, grads, square_avgs, grad_avgs, momentum_buffers, sizes, lr, alpha, eps, weight_decay,
                 momentum, centered, maximize):
    for i, (p, g) in enumerate(zip(params, grads)):
        gv = _eff_grad(g, p, maximize, weight_decay)
        s = square_avgs[i] * alpha + gv * gv * (1.0 - alpha)
        square_avgs[i].copy_(s)
        if centered:
            ga = grad_avgs[i] + (gv - grad_avgs[i]) * (1.0 - alpha)
            grad_avgs[i].copy_(ga)
            avg = (s - ga * ga).sqrt() + eps
        else:
            avg = s.sqrt() + eps
        if momentum > 0:
            b = momentum_buffers[i] * momentum + gv / avg
            momentum_buffers[i].copy_(b)
            p.copy_(p - b * lr)
        else:
            p.copy_(p - (gv / avg) * lr)


def adagrad_step(params, grads, state_sums, sizes, steps, lr, lr_decay, weight_decay, eps, maximize):
    for i, (p, g) in enumerate(zip(params, grads)):
        gv = _eff_grad(g, p, maximize, weight_decay)
        s = state_sums[i] + gv * gv
        state_sums[i].copy_(s)
        clr = lr / (1 + (steps[i] - 1) * lr_decay)
        p.copy_(p - (gv / (s.sqrt() + eps)) * clr)


def adadelta_step(params, grads, square_avgs, acc_deltas, sizes, lr, rho, eps, weight_decay, maximize):
    for i, (p, g) in enumerate(zip(params, grads)):
        gv = _eff_grad(g, p, maximize, weight_decay)
        s = square_avgs[i] * rho + gv * gv * (1.0 - rho)
        square_avgs[i].copy_(s)
        delta = (acc_deltas[i] + eps).sqrt() / (s + eps).sqrt() * gv
        acc_deltas[i].copy_(acc_deltas[i] * rho + delta * delta * (1.0 - rho))
        p.copy_(p - delta * lr)
