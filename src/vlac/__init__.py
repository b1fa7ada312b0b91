"""vlac: a Vision-Language-Action-Critic toolkit for real-world robot reinforcement learning.

Packages: ``vlac.sim`` (simulated robots), ``vlac.data`` (LeRobot-layout datasets), ``vlac.rl`` (the loop),
``vlac.scripts`` (the ``vlac`` command).
"""

__version__ = "0.1.0"
