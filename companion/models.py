"""Every model of the course and its configuration under one roof: ``from companion.models import ResNet, ResNetConfig``.

Each name is defined in the module of the chapter that builds it (``companion.resnet`` for chapter 07, …) and
imported here explicitly; :data:`WHERE` says which module holds each and the chapter that introduces it.
``python -c "import companion.models as m; print(m.__all__)"`` lists them.
"""

from __future__ import annotations

from .autoencoder import AEConfig, ConvAutoencoder, LinearAutoencoder
from .cnn import LeNet, LeNetConfig, ShallowCNN, ShallowCNNConfig
from .ddpm import DDPM, DDPMConfig
from .evaluation import FeatureNet
from .gan import DCGANConfig, Discriminator, Generator, ToyDiscriminator, ToyGANConfig, ToyGenerator
from .layers import BatchNorm2d, FeedForward, MultiHeadAttention, TransformerBlock
from .mlp import MLP, SoftmaxRegression
from .resnet import BasicBlock, Bottleneck, ResNet, ResNetConfig
from .unet import UNet, UNetConfig
from .vae import VAE, VAEConfig
from .vae_variants import CVAE, BetaSweep, BetaVAE, CondVAEConfig
from .vgg import VGG, VGGConfig
from .vit import PatchEmbedding, SmallCNN, ViT, ViTConfig
from .vqvae import VQVAE, CodePrior, PriorConfig, VectorQuantizer, VQVAEConfig

#: name -> (module that defines it, chapter that introduces it)
WHERE: dict[str, tuple[str, str]] = {
    "BatchNorm2d": ("companion.layers", "05"),
    "MultiHeadAttention": ("companion.layers", "08"),
    "FeedForward": ("companion.layers", "08"),
    "TransformerBlock": ("companion.layers", "08"),
    "SoftmaxRegression": ("companion.mlp", "02"),
    "MLP": ("companion.mlp", "02"),
    "LeNet": ("companion.cnn", "04"),
    "LeNetConfig": ("companion.cnn", "04"),
    "ShallowCNN": ("companion.cnn", "04"),
    "ShallowCNNConfig": ("companion.cnn", "04"),
    "VGG": ("companion.vgg", "05"),
    "VGGConfig": ("companion.vgg", "05"),
    "BasicBlock": ("companion.resnet", "07"),
    "Bottleneck": ("companion.resnet", "07"),
    "ResNet": ("companion.resnet", "07"),
    "ResNetConfig": ("companion.resnet", "07"),
    "PatchEmbedding": ("companion.vit", "08"),
    "ViT": ("companion.vit", "08"),
    "ViTConfig": ("companion.vit", "08"),
    "SmallCNN": ("companion.vit", "08"),
    "LinearAutoencoder": ("companion.autoencoder", "09"),
    "ConvAutoencoder": ("companion.autoencoder", "09"),
    "AEConfig": ("companion.autoencoder", "09"),
    "VAE": ("companion.vae", "10"),
    "VAEConfig": ("companion.vae", "10"),
    "BetaVAE": ("companion.vae_variants", "11"),
    "CondVAEConfig": ("companion.vae_variants", "11"),
    "CVAE": ("companion.vae_variants", "11"),
    "BetaSweep": ("companion.vae_variants", "11"),
    "VectorQuantizer": ("companion.vqvae", "12"),
    "VQVAE": ("companion.vqvae", "12"),
    "VQVAEConfig": ("companion.vqvae", "12"),
    "CodePrior": ("companion.vqvae", "12"),
    "PriorConfig": ("companion.vqvae", "12"),
    "FeatureNet": ("companion.evaluation", "13"),
    "ToyGANConfig": ("companion.gan", "14"),
    "ToyGenerator": ("companion.gan", "14"),
    "ToyDiscriminator": ("companion.gan", "14"),
    "DCGANConfig": ("companion.gan", "14"),
    "Generator": ("companion.gan", "14"),
    "Discriminator": ("companion.gan", "14"),
    "UNet": ("companion.unet", "18"),
    "UNetConfig": ("companion.unet", "18"),
    "DDPM": ("companion.ddpm", "18"),
    "DDPMConfig": ("companion.ddpm", "18"),
}

#: names exported here under another name than the defining module's
RENAMED: dict[str, str] = {}

__all__ = [
    "AEConfig",
    "BasicBlock",
    "BatchNorm2d",
    "BetaSweep",
    "BetaVAE",
    "Bottleneck",
    "CVAE",
    "CodePrior",
    "CondVAEConfig",
    "ConvAutoencoder",
    "DCGANConfig",
    "DDPM",
    "DDPMConfig",
    "Discriminator",
    "FeatureNet",
    "FeedForward",
    "Generator",
    "LeNet",
    "LeNetConfig",
    "LinearAutoencoder",
    "MLP",
    "MultiHeadAttention",
    "PatchEmbedding",
    "PriorConfig",
    "ResNet",
    "ResNetConfig",
    "ShallowCNN",
    "ShallowCNNConfig",
    "SmallCNN",
    "SoftmaxRegression",
    "ToyDiscriminator",
    "ToyGANConfig",
    "ToyGenerator",
    "TransformerBlock",
    "UNet",
    "UNetConfig",
    "VAE",
    "VAEConfig",
    "VGG",
    "VGGConfig",
    "VQVAE",
    "VQVAEConfig",
    "VectorQuantizer",
    "ViT",
    "ViTConfig",
]
