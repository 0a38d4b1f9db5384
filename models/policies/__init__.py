"""Bandit policies behind one contract (:class:`~models.policies.base.Policy`) and one registry.

Every module in this package that defines a policy registers it with
:func:`~models.policies.registry.register`; :func:`~models.policies.registry.make_policy` and
:func:`~models.policies.registry.policy_names` import every module of the package first, so a
policy added in a new file is found (and covered by tests/conformance/test_policies.py) with no
list to edit.
"""
