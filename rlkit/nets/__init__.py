"""Networks shared by agents and supervised tasks: encoders (observations -> features) and heads."""

from rlkit.nets.cnn import DeepCNN
from rlkit.nets.densenet import DenseNet, densenet121, densenet_bc_cifar
from rlkit.nets.encoders import MLP, DenseNetEncoder, NatureCNN, ResNetEncoder, make_encoder
from rlkit.nets.policies import (
    ActorCritic, CategoricalHead, DiagGaussian, GaussianHead, MultiCategorical, MultiCategoricalHead, RunningMeanStd,
    ValueHead, kl_divergence,
)
from rlkit.nets.augment import random_shift
from rlkit.nets.heads import BootstrappedQHeads, DuelingQHead, ParallelLinear, QHead
from rlkit.nets.noisy import NoisyLinear, noise_off, reset_noise
from rlkit.nets.pretrained import freeze, frozen_batchnorm_eval, load_pretrained, replace_head
from rlkit.nets.resnet import BasicBlock, Bottleneck, CifarResNet, ResNet, resnet18, resnet34, resnet50

__all__ = [
    "ActorCritic", "CategoricalHead", "DiagGaussian", "GaussianHead", "MultiCategorical", "MultiCategoricalHead",
    "RunningMeanStd", "ValueHead", "kl_divergence", "MLP", "NatureCNN", "ResNetEncoder", "make_encoder", "QHead", "DuelingQHead", "BootstrappedQHeads",
    "ParallelLinear", "NoisyLinear", "noise_off", "reset_noise", "random_shift", "BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50", "CifarResNet",
    "DeepCNN", "load_pretrained", "replace_head", "freeze", "frozen_batchnorm_eval", "DenseNet", "densenet121",
    "densenet_bc_cifar", "DenseNetEncoder"]
