"""Ground areas on the ellipsoid for any CRS (geoseg.geometry), and the
planar fallbacks, which warn (AreaWarning)."""

import numpy as np
import pytest
from affine import Affine
from pyproj import CRS, Geod

from geoseg.errors import AreaWarning
from geoseg.geometry import geometry_area_m2, pixel_area_m2


def test_geometry_area_on_the_ellipsoid():
    import shapely

    # a 1 x 1 degree square at 60 N: geodesic area within 1e-6
    sq = shapely.box(10, 60, 11, 61)
    ref = abs(Geod(ellps="WGS84").geometry_area_perimeter(shapely.segmentize(sq, 0.001))[0])
    assert geometry_area_m2([sq], CRS("EPSG:4326").to_wkt(), 0.01)[0] == pytest.approx(ref, rel=1e-6)


def test_pixel_area_geographic_and_projected():
    # 0.001 degree pixels at 60 N, against pyproj.Geod
    t = Affine(0.001, 0, 10.0, 0, -0.001, 60.0)
    a = pixel_area_m2(t, CRS("EPSG:4326").to_wkt(), np.array([0.5]), np.array([0.5]))
    ref, _ = Geod(ellps="WGS84").polygon_area_perimeter([10, 10.001, 10.001, 10], [59.999, 59.999, 60, 60])
    assert a[0] == pytest.approx(abs(ref), rel=1e-6)
    # UTM near its central meridian: 10 m pixels are ~100 m² (scale factor 0.9996²)
    u = pixel_area_m2(Affine(10, 0, 500000, 0, -10, 6000000), CRS("EPSG:32633").to_wkt(),
                      np.array([0.5]), np.array([0.5]))
    assert u[0] == pytest.approx(100 / 0.9996**2, rel=1e-4)


# a local engineering CRS in metres: no ellipsoid, no geographic CRS under it
LOCAL_WKT = 'LOCAL_CS["site grid",LOCAL_DATUM["site",0],UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'


def test_planar_fallback_warns():
    t = Affine(2, 0, 0, 0, -2, 100)
    with pytest.warns(AreaWarning, match="scale factor cannot be computed .* planar areas"):
        a = pixel_area_m2(t, LOCAL_WKT, np.array([[0.5, 1.5]]), np.array([[0.5, 0.5]]))
    assert a.shape == (1, 2) and np.allclose(a, 4.0)


def test_undefined_scale_outside_the_projection_warns():
    # orthographic view centred on 0,0: points beyond the visible hemisphere
    # have no scale factor; their pixels get planar areas
    ortho = CRS("+proj=ortho +lat_0=0 +lon_0=0 +ellps=WGS84").to_wkt()
    t = Affine(1000, 0, 0, 0, -1000, 0)
    rows = np.array([0.5, 0.5])
    cols = np.array([0.5, 1e5])  # the second one is 1e8 m east of the centre: off the globe
    with pytest.warns(AreaWarning, match="undefined at some cells"):
        a = pixel_area_m2(t, ortho, rows, cols)
    assert a[1] == pytest.approx(1e6) and a[0] == pytest.approx(1e6, rel=1e-3)


def test_ground_pixel_size_m():
    from geoseg.geometry import ground_pixel_size_m

    utm = CRS.from_epsg(32633).to_wkt()
    # on the central meridian the UTM scale is 0.9996: a 10 m pixel is 10.004 m on the ground
    assert ground_pixel_size_m(Affine(10, 0, 499000, 0, -10, 6000000), utm, 200, 200) == pytest.approx(10.004, abs=1e-3)
    geo = CRS.from_epsg(4326).to_wkt()
    s = ground_pixel_size_m(Affine(1e-4, 0, 10, 0, -1e-4, 60.0), geo, 100, 100)
    # 0.0001 deg: 11.1 m north-south, 5.6 m east-west at 60 deg: their geometric mean
    assert s == pytest.approx(np.sqrt(11.16 * 5.58), rel=0.01)
    local = 'ENGCRS["local",EDATUM["d"],CS[Cartesian,2],AXIS["x",east,LENGTHUNIT["metre",1]],AXIS["y",north,LENGTHUNIT["metre",1]]]'
    assert ground_pixel_size_m(Affine(1, 0, 0, 0, -1, 0), local, 10, 10) is None
