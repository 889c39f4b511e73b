"""Act natures on real nature cells of the LECTAUREP training pages."""

from __future__ import annotations

import pytest

from registers.natures import act_nature


@pytest.mark.parametrize(
    ("cell", "nature"),
    [
        ("Mainlevée\nd'Opposition\nM", "mainlevée"),
        ("Procuration", "procuration"),
        ("Quittance", "quittance"),
        ("Inventaire", "inventaire"),
        ("Vente", "vente"),
        ("Notoriètérectifve", "notoriété"),
        ("Contrat de Mariage", "contrat de mariage"),
        ("Cion signature", "certificat de signature"),
        ("Certificat Vie", "certificat de vie"),
        ("Dépôt de Pièces\nSuite du 19 Sept^bre 1928\nde Publicité", "dépôt de pièces"),
        ("Compte tutelle", "compte de tutelle"),
        ("Décl Son et Verst", "déclaration"),
        ("Obligation", "obligation"),
        ("Dépot testament.", "dépôt de testament"),
        ("Procès-Verbal", "procès-verbal"),
        ("Quittanse", "quittance"),  # a misread letter
        ('"do"', None),  # a ditto: the entry above's nature (registers.page)
    ],
)
def test_nature_cells(cell: str, nature: str | None) -> None:
    assert act_nature(cell) == nature
