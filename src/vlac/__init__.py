"""vlac: a Vision-Language-Action-Critic toolkit for real-world robot reinforcement learning.

Packages: ``vlac.envs`` (simulated robots), ``vlac.data`` (LeRobot-layout datasets),
``vlac.scripts`` (the ``vlac`` command).
"""

__version__ = "0.1.0"
